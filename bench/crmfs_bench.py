"""crmfs side of the benchmark, on the shared scenario written by ``bench/scenario.py``.

Runs in the project venv. ``run_crmfs_bench(scenario_dir, work_dir)`` builds a fresh store under
``work_dir/store`` with one feature view of 10 features (3 latest values, 7 window aggregations),
ingests the event log and returns its figures as ``{"name", "value", "unit"}`` dicts.

The 1M-row point-in-time join runs in a child process so its peak RSS is that of a process doing
the join once, from a cold start::

    python bench/crmfs_bench.py pit1m STORE_DIR ENTITIES_PARQUET

prints ``{"seconds": ..., "rows": ..., "peak_mb": ...}`` on stdout: the child's own peak RSS
(``peak_memory.py`` says why not ``os.wait4``'s). ``python bench/crmfs_bench.py run SCENARIO_DIR
WORK_DIR`` runs the whole crmfs side and prints the figures as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crmfs.definitions import Aggregation, Entity, EventSource, FeatureView, Latest
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros
from peak_memory import own_peak_mb
from reference_bench import asof_join_seconds
from scenario import ANCHOR

SOURCE = "events"
VIEW = "customer_activity"
INGEST_BATCH_ROWS = 10_000
ONLINE_SINGLE_WARMUP = 50
ONLINE_SINGLE_CALLS = 2_000
ONLINE_BATCH_WARMUP = 5
ONLINE_BATCH_CALLS = 200
BATCH_SIZE = 100
PIT_100K_REPEATS = 3
FRESHNESS_SAMPLES = 300
# Ingestion is synchronous (durable and applied online when ingest returns), so the value shows
# up on the first read; this bound only keeps a broken run from spinning forever.
FRESHNESS_TIMEOUT_S = 5.0
SEED = 11

FEATURES = [
    f"{VIEW}:{name}"
    for name in (
        "last_channel",
        "last_event_type",
        "last_item_id",
        "events_1h",
        "events_7d",
        "events_30d",
        "spend_30d",
        "avg_amount_30d",
        "distinct_items_7d",
        "recent_items_30d",
    )
]


def definitions() -> list[object]:
    customer = Entity("customer", join_key="customer_id")
    events = EventSource(
        SOURCE,
        schema={
            "customer_id": "string",
            "event_id": "string",
            "event_time": "timestamp",
            "event_type": "string",
            "item_id": "string",
            "channel": "string",
            "amount": "float",
        },
        event_id="event_id",
        event_time="event_time",
    )
    view = FeatureView(
        VIEW,
        entity=customer,
        source=events,
        features=[
            Latest("last_channel", "channel"),
            Latest("last_event_type", "event_type"),
            Latest("last_item_id", "item_id"),
            Aggregation("events", "count", windows=["1h", "7d", "30d"]),
            Aggregation("spend", "sum", field="amount", windows=["30d"]),
            Aggregation("avg_amount", "mean", field="amount", windows=["30d"]),
            Aggregation("distinct_items", "count_distinct", field="item_id", windows=["7d"]),
            Aggregation("recent_items", "last_n", field="item_id", n=5, windows=["30d"]),
        ],
        ttl="90d",
    )
    return [view]


class Clock:
    """A settable clock (UTC micros): the store never sees an event "in the future"."""

    def __init__(self, micros: int) -> None:
        self.micros = micros

    def __call__(self) -> int:
        return self.micros


def open_store(folder: Path, clock: Clock) -> FeatureStore:
    return FeatureStore(folder, definitions=definitions(), clock=clock)


def figure(name: str, value: float, unit: str) -> dict[str, Any]:
    return {"name": name, "value": round(float(value), 3), "unit": unit}


def log(message: str) -> None:
    print(f"[crmfs_bench] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _max_micros(table: pa.Table) -> int:
    column = pc.cast(table.column("event_time"), pa.int64())
    return int(pc.max(column).as_py())


def ingest_events(store: FeatureStore, clock: Clock, events: pa.Table) -> float:
    """Ingest ``events`` (sorted by time) in 10k-row batches; returns events per second."""
    batches = [
        events.slice(offset, INGEST_BATCH_ROWS)
        for offset in range(0, events.num_rows, INGEST_BATCH_ROWS)
    ]
    clocks = [_max_micros(batch) for batch in batches]
    accepted = 0
    per_batch = []
    start = time.perf_counter()
    for batch, at in zip(batches, clocks, strict=True):
        clock.micros = at
        t0 = time.perf_counter()
        report = store.ingest(SOURCE, batch)
        per_batch.append(time.perf_counter() - t0)
        accepted += report.accepted
    # Log compaction runs in a thread behind the ingest: its work is part of ingesting (so
    # it is timed here), and it must not run on into the read figures measured next.
    drained = time.perf_counter()
    store.log.wait_for_compaction()
    log(f"background compaction ran on {time.perf_counter() - drained:.2f} s after the ingest")
    seconds = time.perf_counter() - start
    head, tail = per_batch[:10], per_batch[-10:]
    log(
        f"ingest per batch: first 10 mean {np.mean(head) * 1e3:.0f} ms,"
        f" last 10 mean {np.mean(tail) * 1e3:.0f} ms"
    )
    if accepted != events.num_rows:
        raise RuntimeError(f"ingest accepted {accepted} of {events.num_rows} events")
    log(f"ingested {accepted} events in {seconds:.2f} s ({len(batches)} batches)")
    return events.num_rows / seconds


def online_latencies(
    store: FeatureStore, ids: np.ndarray, rng: np.random.Generator, size: int, warmup: int, n: int
) -> np.ndarray:
    """Seconds per get_online_features call of ``size`` random entities (warm-up not counted)."""
    out = np.empty(n)
    for i in range(warmup + n):
        rows = [{"customer_id": c} for c in rng.choice(ids, size=size)]
        start = time.perf_counter()
        response = store.get_online_features(FEATURES, rows, now=ANCHOR)
        elapsed = time.perf_counter() - start
        if i >= warmup:
            out[i - warmup] = elapsed
        if i == 0 and response.statuses[FEATURES[0]][0] == "missing":
            raise RuntimeError(f"online read of {rows[0]} returned no {FEATURES[0]}")
    return out


def pit(store: FeatureStore, entities: pa.Table) -> float:
    seconds, table = timed(lambda: store.get_historical_features(entities, FEATURES).to_arrow())
    if table.num_rows != entities.num_rows:
        raise RuntimeError(f"PIT returned {table.num_rows} rows for {entities.num_rows}")
    return seconds


def pit_1m_in_child(store_dir: Path, entities_path: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of the 1M-row PIT join in a fresh child process."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "pit1m"]
    cmd += [str(store_dir), str(entities_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"pit1m child failed with exit code {proc.returncode}")
    result = json.loads(out)
    peak_mb = result.get("peak_mb") or rusage.ru_maxrss / 1024  # see peak_memory.py
    return float(result["seconds"]), float(peak_mb)


def freshness(
    store: FeatureStore, clock: Clock, ids: np.ndarray, rng: np.random.Generator, n: int
) -> np.ndarray:
    """Seconds from the start of a single-event ingest to a read that sees the event."""
    ref = f"{VIEW}:last_item_id"
    out = np.empty(n)
    base = to_micros(ANCHOR)
    for i in range(n):
        customer = str(rng.choice(ids))
        marker = f"fresh{i:05d}"
        event_time = ANCHOR + timedelta(seconds=i + 1)
        record = {
            "customer_id": customer,
            "event_id": f"fresh-e{i:05d}",
            "event_time": event_time,
            "event_type": "view",
            "item_id": marker,
            "channel": "web",
            "amount": None,
        }
        clock.micros = base + (i + 1) * 1_000_000
        start = time.perf_counter()
        store.ingest(SOURCE, [record])
        while True:
            response = store.get_online_features([ref], [{"customer_id": customer}], now=event_time)
            elapsed = time.perf_counter() - start
            if response.values[ref][0] == marker:
                break
            if elapsed > FRESHNESS_TIMEOUT_S:
                raise RuntimeError(f"event {marker} not visible after {FRESHNESS_TIMEOUT_S} s")
        out[i] = elapsed
    return out


def run_crmfs_bench(scenario_dir: Path, work_dir: Path) -> list[dict[str, Any]]:
    wall = time.perf_counter()
    scenario_dir = Path(scenario_dir)
    store_dir = Path(work_dir) / "store"
    # A fresh store every run: a leftover log would turn the bulk ingest into duplicates.
    if store_dir.exists():
        shutil.rmtree(store_dir)
    store_dir.mkdir(parents=True)
    figures: list[dict[str, Any]] = []

    events = pq.read_table(scenario_dir / "events.parquet")
    first = int(pc.min(pc.cast(events.column("event_time"), pa.int64())).as_py())
    clock = Clock(first)
    store = open_store(store_dir, clock)
    seconds, _ = timed(store.apply)
    log(f"apply took {seconds:.2f} s")

    figures.append(figure("ingest_events_per_s", ingest_events(store, clock, events), "events/s"))

    ids = pc.unique(events.column("customer_id")).to_numpy(zero_copy_only=False)
    del events
    rng = np.random.default_rng(SEED)
    single = online_latencies(store, ids, rng, 1, ONLINE_SINGLE_WARMUP, ONLINE_SINGLE_CALLS)
    figures.append(figure("online_single_p99_ms", np.percentile(single, 99) * 1e3, "ms"))
    log(f"online single: p50 {np.percentile(single, 50) * 1e3:.3f} ms")
    batch = online_latencies(store, ids, rng, BATCH_SIZE, ONLINE_BATCH_WARMUP, ONLINE_BATCH_CALLS)
    figures.append(
        figure("online_batch100_rows_per_s", BATCH_SIZE * len(batch) / batch.sum(), "rows/s")
    )

    entities_100k = pq.read_table(scenario_dir / "entities_100k.parquet")
    runs = [pit(store, entities_100k) for _ in range(PIT_100K_REPEATS)]
    log(f"PIT 100k runs: {', '.join(f'{s:.2f}' for s in runs)} s")
    figures.append(figure("pit_100k_s", float(np.median(runs)), "s"))
    floor = asof_join_seconds(
        scenario_dir / "events.parquet", scenario_dir / "entities_100k.parquet"
    )
    log(f"hand-written DuckDB ASOF join (latest values only), 100k rows: {floor:.3f} s")
    figures.append(figure("duckdb_asof_100k_s", floor, "s"))

    seconds, peak_mb = pit_1m_in_child(store_dir, scenario_dir / "entities_1m.parquet")
    log(f"PIT 1m: {seconds:.2f} s, child peak RSS {peak_mb:.0f} MB")
    figures.append(figure("pit_1m_s", seconds, "s"))
    figures.append(figure("pit_1m_peak_mb", peak_mb, "MB"))

    seconds, reports = timed(store.materialize)
    log(f"materialize: {seconds:.2f} s, {sum(r.entities for r in reports)} entities")
    figures.append(figure("backfill_1m_s", seconds, "s"))

    # Last, so the extra events (after the anchor) do not touch the figures above.
    fresh = freshness(store, clock, ids, rng, FRESHNESS_SAMPLES)
    figures.append(figure("freshness_p99_ms", np.percentile(fresh, 99) * 1e3, "ms"))
    log(f"freshness: p50 {np.percentile(fresh, 50) * 1e3:.3f} ms")

    store.close()
    log(f"crmfs run took {time.perf_counter() - wall:.1f} s")
    return figures


def _pit1m_child(store_dir: Path, entities_path: Path) -> int:
    entities = pq.read_table(entities_path)
    store = open_store(store_dir, Clock(to_micros(ANCHOR)))
    seconds = pit(store, entities)
    print(json.dumps({"seconds": seconds, "rows": entities.num_rows, "peak_mb": own_peak_mb()}))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 3 and args[0] == "pit1m":
        return _pit1m_child(Path(args[1]), Path(args[2]))
    if len(args) == 3 and args[0] == "run":
        print(json.dumps(run_crmfs_bench(Path(args[1]), Path(args[2])), indent=2))
        return 0
    print(
        "usage: python bench/crmfs_bench.py pit1m STORE_DIR ENTITIES_PARQUET\n"
        "       python bench/crmfs_bench.py run SCENARIO_DIR WORK_DIR",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
