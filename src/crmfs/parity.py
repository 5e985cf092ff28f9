"""Prove parity on a real event log: replay it through the streaming runtime into a scratch
online store, read at sampled check times, and compare every value with the batch
runtime's ``as_served`` value at the same time.
"""

from __future__ import annotations

import math
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from crmfs.definitions import FieldType, Function
from crmfs.runtimes.batch.engine import keyed_by_mapping
from crmfs.runtimes.batch.port import BatchEngine
from crmfs.runtimes.streaming.processor import StreamProcessor
from crmfs.runtimes.streaming.reader import read_values
from crmfs.runtimes.streaming.state import decode
from crmfs.storage.event_log import INGESTED_AT, SEQ, EventLog
from crmfs.storage.ports import OnlineStore, Watermark
from crmfs.storage.sqlite_online import SqliteOnlineStore
from crmfs.transform.plan import ViewPlan

FLOAT_TOLERANCE = 1e-9  # float sums and means: addition order differs between tiles and SQL


@dataclass
class FeatureParity:
    feature: str
    checks: int = 0
    mismatches: int = 0
    examples: list[tuple[Any, int, Any, Any]] = field(default_factory=list)


@dataclass
class ParityReport:
    features: dict[str, FeatureParity]
    check_times: int
    events_replayed: int

    @property
    def checks(self) -> int:
        return sum(f.checks for f in self.features.values())

    @property
    def mismatches(self) -> int:
        return sum(f.mismatches for f in self.features.values())

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.checks > 0


def replay_parity(
    log: EventLog,
    engine: BatchEngine,
    plans: list[ViewPlan],
    check_times: int = 50,
    entities_per_check: int = 25,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> ParityReport:
    """Replay every source of ``plans`` and compare online with offline ``as_served`` values
    (views keyed by a mapping are left out: see ``live_parity``)."""
    plans = [p for p in plans if not keyed_by_mapping(p)]
    rng = random.Random(seed)
    report = ParityReport({}, 0, 0)
    for plan in plans:
        for name in plan.output_names:
            report.features[f"{plan.view.name}:{name}"] = FeatureParity(f"{plan.view.name}:{name}")
    by_source: dict[str, list[ViewPlan]] = {}
    for plan in plans:
        by_source.setdefault(plan.view.source.name, []).append(plan)
    with tempfile.TemporaryDirectory(prefix="crmfs-parity-") as scratch:
        online = SqliteOnlineStore(Path(scratch) / "online.db")
        try:
            for source, source_plans in by_source.items():
                table = log.read(source)
                if table is None:
                    continue
                report.events_replayed += table.num_rows
                samples = _replay(
                    online,
                    source,
                    source_plans,
                    table,
                    check_times,
                    entities_per_check,
                    rng,
                    progress,
                )
                report.check_times += (
                    len({t for _, t, _ in samples[source_plans[0].table]}) if source_plans else 0
                )
                for plan in source_plans:
                    _compare(engine, plan, samples[plan.table], report)
        finally:
            online.close()
    return report


def live_parity(
    online: OnlineStore,
    engine: BatchEngine,
    mapped: Sequence[tuple[ViewPlan, pa.Table]],
    at: int,
    entities: int = 200,
    seed: int = 0,
    report: ParityReport | None = None,
) -> ParityReport:
    """Compare the live online store with the batch runtime's ``as_served`` values at ``at``
    for views whose keys come from a mapping (golden ids, relations): a replay of the log
    alone does not repeat their merges, splits and moves, so their states as the store
    followed them are checked instead, for a sample of keys. ``mapped``: each view's plan and
    its mapping on the recorded axis."""
    rng = random.Random(seed)
    report = report if report is not None else ParityReport({}, 0, 0)
    for plan, mapping in mapped:
        for name in plan.output_names:
            report.features.setdefault(
                f"{plan.view.name}:{name}", FeatureParity(f"{plan.view.name}:{name}")
            )
        keys = sorted(set(mapping.column("golden_id").to_pylist()) - {None}, key=str)
        keys = rng.sample(keys, min(entities, len(keys)))
        samples = [
            (key, at, read_values(plan, decode(blob), at)[0] if blob else None)
            for key, blob in zip(keys, online.read(plan.table, keys), strict=True)
        ]
        _compare(engine, plan, samples, report, mapping)
    report.check_times += 1 if mapped else 0
    return report


def _replay(
    online: SqliteOnlineStore,
    source: str,
    plans: list[ViewPlan],
    table: pa.Table,
    check_times: int,
    per_check: int,
    rng: random.Random,
    progress: Callable[[int, int], None] | None,
) -> dict[str, list[tuple[Any, int, list[Any] | None]]]:
    processor = StreamProcessor(online, plans)
    ingested = table[INGESTED_AT].to_numpy()
    # Each original append shares one ingestion time: replay append by append.
    boundaries = [
        0,
        *(pc.indices_nonzero(pc.not_equal(ingested[1:], ingested[:-1])).to_numpy() + 1),
        len(ingested),
    ]
    batches = list(pairwise(boundaries))
    chosen = set(rng.sample(range(len(batches)), min(check_times, len(batches))))
    samples: dict[str, list[tuple[Any, int, list[Any] | None]]] = {p.table: [] for p in plans}
    seen: dict[str, list[Any]] = {p.table: [] for p in plans}
    seen_set: dict[str, set[Any]] = {p.table: set() for p in plans}
    for index, (start, stop) in enumerate(batches):
        batch = table.slice(start, stop - start)
        now = int(ingested[start])
        online.write(processor.fold(source, batch, now), Watermark(batch[SEQ][-1].as_py(), now))
        for plan in plans:
            for key in batch[plan.view.key].to_pylist():
                if key is not None and key not in seen_set[plan.table]:
                    seen_set[plan.table].add(key)
                    seen[plan.table].append(key)
        if index in chosen:
            next_time = int(ingested[stop]) if stop < len(ingested) else now + 3_600_000_000
            for t in {now, now + rng.randrange(max(1, next_time - now))}:
                for plan in plans:
                    keys = rng.sample(seen[plan.table], min(per_check, len(seen[plan.table])))
                    for key, blob in zip(keys, online.read(plan.table, keys), strict=True):
                        values = read_values(plan, decode(blob), t)[0] if blob else None
                        samples[plan.table].append((key, t, values))
        if progress is not None:
            progress(stop, len(ingested))
    return samples


def _compare(
    engine: BatchEngine,
    plan: ViewPlan,
    samples: list[tuple[Any, int, list[Any] | None]],
    report: ParityReport,
    mapping: pa.Table | None = None,
) -> None:
    if not samples:
        return
    rows = pa.table(
        {
            "__row": pa.array(range(len(samples)), pa.int64()),
            "__key": [k for k, _, _ in samples],
            "__t": pa.array([t for _, t, _ in samples], pa.int64()),
        }
    )
    offline = engine.point_in_time(plan, rows, as_served=True, identity=mapping)
    columns = {name: offline.column(name).to_pylist() for name in plan.output_names}
    schema = plan.view.source.fields
    tolerant = {
        w.feature.name
        for w in plan.windows
        if w.feature.function in (Function.SUM, Function.MEAN)
        and w.feature.field is not None
        and schema[w.feature.field] is FieldType.FLOAT
    }
    for i, (key, t, values) in enumerate(samples):
        for j, name in enumerate(plan.output_names):
            expected = columns[name][i]
            actual = values[j] if values is not None else _empty(plan, j)
            result = report.features[f"{plan.view.name}:{name}"]
            result.checks += 1
            if not _equal(actual, expected, name in tolerant):
                result.mismatches += 1
                if len(result.examples) < 5:
                    result.examples.append((key, t, actual, expected))


def _empty(plan: ViewPlan, position: int) -> Any:
    return plan.windows[position].empty_value() if position < len(plan.windows) else None


def _equal(a: Any, b: Any, tolerant: bool) -> bool:
    if tolerant and isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)
    return bool(a == b)


def columns_match(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> bool:
    """Online responses agree: floats within ``FLOAT_TOLERANCE``, everything else exactly."""
    if a.keys() != b.keys():
        return False
    return all(
        len(a[k]) == len(b[k]) and all(_equal(x, y, True) for x, y in zip(a[k], b[k], strict=True))
        for k in a
    )
