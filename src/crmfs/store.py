"""``FeatureStore``: the composition root and thin facade over the use cases."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from crmfs.backends import (
    entity_key_ttl,
    online_store_opener,
    open_batch_engine,
    open_online_store,
    open_registry,
)
from crmfs.config import ProjectConfig, load_definitions
from crmfs.definitions import Catalog, fingerprint
from crmfs.errors import ConfigError, NotApplied, RegistryError
from crmfs.identity.clustering import LinkPolicy
from crmfs.identity.entity_rows import EntityRows
from crmfs.identity.graph import IntervalAxis
from crmfs.identity.graph_backends import open_identity_graph
from crmfs.identity.service import DEFAULT_REVIEW_THRESHOLD, IdentityService
from crmfs.ingestion.commit_lock import LOCK_FILE, CommitLock
from crmfs.ingestion.identity import GraphIdentity
from crmfs.ingestion.keying import MappedKeys
from crmfs.ingestion.pipeline import IngestionPipeline, IngestReport
from crmfs.ingestion.readers import Chunk, Records, read_file
from crmfs.parity import ParityReport, live_parity, replay_parity
from crmfs.registry.changes import Change, ChangeKind
from crmfs.runtimes.batch.engine import PitStrategy, keyed_by_mapping
from crmfs.runtimes.streaming.processor import StreamProcessor
from crmfs.serving.online import OnlineResponse
from crmfs.serving.reads import FeatureSelection, OnlineReads
from crmfs.serving.selection import CompiledSelection
from crmfs.storage.event_log import EventLog, QuarantinedRecord, Rejected
from crmfs.storage.ports import EntityKey, OnlineStore, WatermarkMoved
from crmfs.timestamps import from_micros, now_micros, to_micros
from crmfs.training import TIMESTAMP_COLUMN, TrainingSet, entity_table, historical_features
from crmfs.transform.plan import ViewPlan, online_table, plan_view

if TYPE_CHECKING:
    from crmfs.serving.cache import CachedReads

Clock = Callable[[], int]
IdentityAsOf = Literal["as_of", "latest"]


@dataclass(frozen=True)
class MaterializeReport:
    view: str
    version: int
    entities: int


class FeatureStore:
    """One project: definitions, registry, event log, online store and batch engine.

    >>> store = FeatureStore("my_project")                  # reads my_project/crmfs.yaml
    >>> store.apply()
    >>> store.ingest("clicks", [{"event_id": "e1", "ts": ..., "customer_id": "c1"}])
    >>> store.get_online_features(["activity:clicks_1h"], [{"customer_id": "c1"}]).to_dict()

    ``definitions`` replaces the project's definitions module (tests, notebooks);
    ``clock`` (UTC microseconds) replaces the wall clock for ingestion times.
    """

    def __init__(
        self,
        repo_path: str | Path = ".",
        *,
        definitions: Iterable[object] | None = None,
        clock: Clock | None = None,
    ) -> None:
        root = Path(repo_path)
        if definitions is None:
            self.config = ProjectConfig.load(root)
            self.catalog = load_definitions(self.config.definitions)
        else:
            self.config = ProjectConfig(
                root, root.name or "crmfs", root / "definitions.py", root / "data"
            )
            self.catalog = Catalog.of(definitions)
        data = self.config.data_dir
        self.registry = open_registry(self.config)
        grace = self.config.compaction_grace_s
        # Compaction runs in a thread: an ingest that makes one due does not wait for it.
        self.log = (
            EventLog(data / "log", background_compaction=True)
            if grace is None
            else EventLog(data / "log", compaction_grace_s=grace, background_compaction=True)
        )
        self.online = open_online_store(self.config, key_ttl=self._online_key_ttl)
        self.engine = open_batch_engine(self.config.batch_engine, self.log)
        self.clock: Clock = clock or now_micros
        identity_options = self.config.identity
        self.identity_region: str = identity_options.get("default_region", "US")
        self.identity_graph = open_identity_graph(identity_options, data, self.clock)
        # Lookups, clusters and operator merges and splits (followed online at once).
        self.identity = IdentityService(
            self.identity_graph,
            self.identity_region,
            after_change=self.follow_identity,
            review_threshold=identity_options.get("review_threshold", DEFAULT_REVIEW_THRESHOLD),
            policy=_link_policy(identity_options),
        )
        self._commit_lock = _commit_lock(self.log.root)
        self._commit_depth = threading.local()
        self._plans: dict[str, ViewPlan] | None = None
        self.reads = OnlineReads(
            self.online,
            self.catalog,
            self.plans,
            self._entity_rows,
            self._offline_values,
            self.log.last_ingested_at,
        )
        self._pipeline: IngestionPipeline | None = None
        self._mapped_keys: MappedKeys | None = None

    # -- definitions -----------------------------------------------------------------

    def plan(self) -> list[Change]:
        """What ``apply`` would change, and whether each change alters values."""
        return self.registry.plan(self.catalog)

    def apply(self) -> list[Change]:
        """Register the definitions; views with new versions are rebuilt from the log."""
        # The tables to drop are read from what this apply replaces: another process's apply
        # in between is refused (RegistryConflict) rather than built on unseen.
        generation = self.registry.generation()
        before = self.registry.applied()
        changes = self.registry.apply(self.catalog, self.clock(), expected_generation=generation)
        self._plans = None
        self._drop_pipeline()
        self.reads.forget()
        for change in changes:
            if change.kind != "FeatureView":
                continue
            if change.change in (ChangeKind.ADD, ChangeKind.VALUES):
                self.materialize(views=[change.name])
            old = before.get((change.kind, change.name))
            if old is not None and change.change in (ChangeKind.VALUES, ChangeKind.REMOVE):
                # The old version's definition may be gone from the code (a removal),
                # so its table is named from the registry's record, not from a plan.
                self.online.drop_table(online_table(change.name, old.version))
        return changes

    def _applied_plans(self, strict: bool) -> dict[str, ViewPlan]:
        applied = self.registry.applied()
        plans: dict[str, ViewPlan] = {}
        pending: list[str] = []
        for view in sorted(self.catalog.views.values(), key=lambda v: v.name):
            current = applied.get(("FeatureView", view.name))
            if current is None:
                pending.append(f"{view.name!r} (new, not applied)")
            elif current.value_fp != fingerprint(view.value_spec()):
                pending.append(f"{view.name!r} (values changed since v{current.version})")
            else:
                plans[view.name] = plan_view(view, current.version)
        if strict and pending:
            raise RegistryError(
                f"feature views differ from the registry: {', '.join(pending)};"
                " run `crmfs plan` and `crmfs apply`"
            )
        return plans

    def plans(self) -> dict[str, ViewPlan]:
        """Plans of the applied views (raises if definitions changed since the last apply)."""
        if self._plans is None:
            self._plans = self._applied_plans(strict=True)
        return self._plans

    @property
    def mapped_keys(self) -> MappedKeys:
        """Golden-id and relation mappings, and the followers of their changes."""
        if self._mapped_keys is None:
            self._mapped_keys = MappedKeys(
                self.catalog,
                self.identity_graph,
                self.log,
                self.engine,
                self.online,
                list(self.plans().values()),
            )
        return self._mapped_keys

    @property
    def pipeline(self) -> IngestionPipeline:
        if self._pipeline is None:
            keys = self.mapped_keys
            processor = StreamProcessor(
                self.online,
                [*self.plans().values(), *keys.member_plans.values()],
                worker_online=self._worker_online(),
                key_columns=keys.key_columns,
            )
            self._pipeline = IngestionPipeline(
                self.catalog,
                self.log,
                processor,
                self.clock,
                identity=GraphIdentity(self.identity_graph, self.identity_region),
                after_apply=keys.follow,
            )
        return self._pipeline

    def follow_identity(self) -> int:
        """Apply identity and relation changes (merges, splits, new parents) the online
        states have not followed."""
        with self._committing():
            followed = self.mapped_keys.follow()
        if followed:
            self.reads.wrote()
        return followed

    def _worker_online(self) -> Callable[[], OnlineStore] | None:
        """How a fold worker opens the online store; None folds on one core only."""
        if not self.config.online_store.parallel_fold or (os.cpu_count() or 1) < 2:
            return None
        return online_store_opener(self.config)

    def _online_key_ttl(self, table: str) -> int | None:
        """The key TTL (s) of an applied view's online table, for stores that expire keys
        (Redis); None for other tables (their states are kept)."""
        for plan in (self._plans or {}).values():
            if plan.table == table:
                return entity_key_ttl(plan)
        return None

    def _drop_pipeline(self) -> None:
        if self._pipeline is not None:
            self._pipeline.processor.close()
        self._pipeline = None
        self._mapped_keys = None

    # -- ingestion -------------------------------------------------------------------

    def ingest(
        self,
        source: str,
        records: Records,
        *,
        now: datetime | None = None,
        rejected: Sequence[Rejected] = (),
    ) -> IngestReport:
        """Validate, log and apply a batch; returns when it is durable and visible online.

        ``rejected``: records the caller could not even parse, quarantined with the batch."""
        at = None if now is None else to_micros(now)
        try:
            with self._committing():
                self.catch_up()
                return self.pipeline.ingest(source, records, at, list(rejected) or None)
        finally:
            self.reads.wrote()

    @contextmanager
    def _committing(self) -> Iterator[None]:
        """Hold the project's commit lock (``ingestion.commit_lock``), as stream workers do
        for their commits, so a direct ingest or an operator's identity change in this
        process never interleaves with theirs. Re-entrant within a thread."""
        depth = getattr(self._commit_depth, "n", 0)
        if depth == 0 and self._commit_lock is not None:
            self._commit_lock.acquire()
        self._commit_depth.n = depth + 1
        try:
            yield
        finally:
            self._commit_depth.n = depth
            if depth == 0 and self._commit_lock is not None:
                self._commit_lock.release()

    def ingest_file(
        self,
        source: str,
        path: str | Path,
        *,
        chunk_rows: int = 50_000,
        progress: Callable[[Chunk, IngestReport], None] | None = None,
    ) -> IngestReport:
        """Ingest a CSV, JSON-lines or Parquet file chunk by chunk (each chunk is acknowledged)."""
        pipeline = self.pipeline
        with self._committing():
            self.catch_up()
        total = IngestReport(source=source)
        for chunk in read_file(Path(path), pipeline.source(source), chunk_rows):
            bad = [
                Rejected(None, f"line {n}: {problem}", {"line": text})
                for n, text, problem in chunk.bad_lines
            ]
            with self._committing():
                report = pipeline.ingest(source, chunk.table, extra_rejected=bad)
            self.reads.wrote()
            total.add(report)
            if progress is not None:
                progress(chunk, total)
        return total

    def catch_up(self) -> int:
        """Apply committed events and identity changes the online store has not seen (after
        a crash)."""
        applied = self.pipeline.processor.catch_up(self.log)
        self.follow_identity()
        return applied

    def quarantine(self, source: str | None = None, limit: int = 1000) -> list[QuarantinedRecord]:
        return self.log.quarantine(source, limit)

    # -- reads -----------------------------------------------------------------------

    def resolve_features(
        self, features: FeatureSelection
    ) -> list[tuple[ViewPlan, list[str], list[str]]]:
        """Group feature references by view: (plan, feature names, labels as requested)."""
        refs, _ = self.reads.refs_of(features)
        plans = self.plans()
        grouped: dict[str, tuple[ViewPlan, list[str], list[str]]] = {}
        for ref in refs:
            view, name = self.catalog.resolve(ref)
            plan = plans.get(view.name)
            if plan is None:
                raise NotApplied(view.name)
            entry = grouped.setdefault(view.name, (plan, [], []))
            entry[1].append(name)
            entry[2].append(ref)
        return list(grouped.values())

    def get_online_features(
        self,
        features: FeatureSelection,
        entity_rows: Sequence[Mapping[str, Any]],
        *,
        now: datetime | None = None,
        max_age_s: float | None = None,
        offline_fallback: bool = True,
    ) -> OnlineResponse:
        """Features of each entity row now (or at ``now``), each with its status and age.

        The views' fallback chains serve stale or missing values, ``max_age_s`` bounds the
        age of what is served as fresh, and a feature service gated by consent withholds
        personal values of people without it (``serving.contract``). ``offline_fallback``
        False skips the chains' offline steps (they query the event log).
        """
        at = self.clock() if now is None else to_micros(now)
        return self.reads.read(features, entity_rows, at, max_age_s, offline_fallback)

    def online_selection(self, features: FeatureSelection) -> CompiledSelection:
        """A selection compiled for online reads (kept for the next call)."""
        return self.reads.selection(features)

    def use_read_cache(self, max_entries: int = 100_000, ttl_s: float = 1.0) -> CachedReads:
        """Serve online reads through an in-process cache that the online store's writes
        invalidate (``serving.cache``); returns it (hit counts, ``close``)."""
        return self.reads.use_cache(max_entries, ttl_s)

    def _offline_values(
        self, columns: dict[str, list[Any]], at: int, refs: Sequence[str]
    ) -> dict[str, list[object]]:
        """``refs`` of the entity ``columns`` at time ``at``, by the batch runtime."""
        count = len(next(iter(columns.values())))
        table = pa.table({**columns, TIMESTAMP_COLUMN: [from_micros(at)] * count})
        training = self.get_historical_features(table, list(refs), full_feature_names=True)
        out: dict[str, list[object]] = {}
        for ref in refs:
            view, name = self.catalog.resolve(ref)
            out[ref] = training.table.column(f"{view.name}__{name}").to_pylist()
        return out

    def get_historical_features(
        self,
        entity_df: Any,
        features: FeatureSelection,
        *,
        as_served: bool = False,
        full_feature_names: bool = False,
        strategy: PitStrategy = "auto",
        identity: IdentityAsOf = "as_of",
    ) -> TrainingSet:
        """A point-in-time-correct training set, computed by the batch runtime (DuckDB).

        ``strategy`` picks the physical plan (``"range_join"`` or ``"lists"``); the default
        chooses by size. Every plan gives the same values.

        Views keyed by golden ids resolve identity as of each row's time (``"as_of"``: the
        mapping in effect at that event time, or with ``as_served`` the mapping crmfs had
        then), or with today's mapping (``"latest"``). Rows give the entity's join key (a
        golden id) or any declared identifier instead (an ``email`` column, say), which is
        resolved the same way.
        """
        groups = [(plan, names) for plan, names, _ in self.resolve_features(features)]
        mappings: dict[str, pa.Table] = {}
        if any(keyed_by_mapping(plan) for plan, _ in groups):
            if identity not in ("as_of", "latest"):
                raise ConfigError(f"identity must be 'as_of' or 'latest', not {identity!r}")
            axis: IntervalAxis = (
                "current" if identity == "latest" else "recorded" if as_served else "effective"
            )
            for plan, _ in groups:
                mapping = self.mapped_keys.mapping(plan, axis)
                if mapping is not None:
                    mappings[plan.view.name] = mapping
            if any(plan.view.entity.identity for plan, _ in groups):
                golden = self.identity_graph.intervals(axis)
                table = entity_table(entity_df)
                times = pc.cast(
                    pc.cast(table.column(TIMESTAMP_COLUMN), pa.timestamp("us", tz="UTC")),
                    pa.int64(),
                ).to_pylist()
                views = [plan.view for plan, _ in groups]
                entity_df = self._entity_rows().with_golden_ids(table, views, times, golden)
        return historical_features(
            self.engine, entity_df, groups, as_served, full_feature_names, strategy, mappings
        )

    def _entity_rows(self) -> EntityRows:
        sources = list(self.catalog.sources.values())
        return EntityRows(self.identity_graph, self.identity_region, sources)

    # -- parity ----------------------------------------------------------------------

    def check_parity(
        self,
        check_times: int = 50,
        entities_per_check: int = 25,
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> ParityReport:
        """Streaming = batch on this project's log: views keyed by a field are replayed into
        a scratch store and compared at sampled times; views keyed by golden ids or a
        relation are compared as the live store followed them, now (``live_parity``)."""
        plans = list(self.plans().values())
        report = replay_parity(
            self.log, self.engine, plans, check_times, entities_per_check, seed, progress
        )
        mapped = [
            (p, self.mapped_keys.mapping(p, "recorded")) for p in plans if keyed_by_mapping(p)
        ]
        if mapped:
            self.catch_up()
            # Now: after every batch applied and every identity change followed.
            at = max(self.clock(), self.online.watermark().ingested_at)
            per_view = max(entities_per_check, check_times * entities_per_check // 4)
            live_parity(self.online, self.engine, mapped, at, per_view, seed, report)
        return report

    # -- backfill --------------------------------------------------------------------

    def materialize(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        views: Sequence[str] | None = None,
    ) -> list[MaterializeReport]:
        """Rebuild online state from the log with the batch runtime (events in [start, end))."""
        plans = self.plans()
        names = list(views) if views is not None else list(plans)
        start_us = -(2**62) if start is None else to_micros(start)
        end_us = 2**62 if end is None else to_micros(end)
        reports = []
        for name in names:
            plan = plans.get(name)
            if plan is None:
                raise NotApplied(name)
            member = self.mapped_keys.member_plans.get(name)
            if member is not None:  # a rolled-up view's member states first
                self._rebuild(member, start_us, end_us)
            rows = self._rebuild(plan, start_us, end_us)
            reports.append(MaterializeReport(plan.view.name, plan.version, rows))
        return reports

    def _rebuild(self, plan: ViewPlan, start_us: int, end_us: int) -> int:
        """Replace a view's online table with states backfilled from the log; how many."""
        for _ in range(10):
            self.catch_up()
            mark = self.online.watermark()
            now = max(mark.ingested_at, self.log.last_ingested_at())
            identity = self.mapped_keys.mapping(plan, "current")
            table = self.engine.backfill(plan, start_us, end_us, now, mark.seq, identity)
            rows: dict[EntityKey, bytes] = dict(
                zip(table["key"].to_pylist(), table["state"].to_pylist(), strict=True)
            )
            del table
            try:
                self.online.replace_table(plan.table, rows, mark)
                self.reads.wrote()
                return len(rows)
            except WatermarkMoved:
                continue
        raise WatermarkMoved(mark, self.online.watermark())

    def close(self) -> None:
        self._drop_pipeline()
        close_engine = getattr(self.engine, "close", None)
        if close_engine is not None:  # a Spark session the engine started
            close_engine()
        self.identity_graph.close()
        self.log.close()
        self.online.close()
        self.registry.close()
        if self._commit_lock is not None:
            self._commit_lock.close()


def _commit_lock(log_root: Path) -> CommitLock | None:
    """The project's commit lock; None where file locks are not POSIX (no stream workers
    run there either)."""
    try:
        return CommitLock(log_root / LOCK_FILE)
    except ConfigError:
        return None


def _link_policy(options: Mapping[str, Any]) -> LinkPolicy | None:
    """The probabilistic layer's thresholds from ``crmfs.yaml`` (``identity.link_threshold``,
    ``identity.no_link_floor``), or None for the defaults."""
    if "link_threshold" not in options and "no_link_floor" not in options:
        return None
    from crmfs.identity.match_columns import DEFAULT_POLICY

    threshold = options.get("link_threshold", DEFAULT_POLICY.threshold)
    floor = options.get("no_link_floor", min(DEFAULT_POLICY.floor, threshold))
    try:
        return LinkPolicy(threshold, floor)
    except ValueError as exc:
        raise ConfigError(f"crmfs.yaml identity: {exc}") from None
