"""The DuckDB batch engine: runs the compiled SQL over the event log's segments."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crmfs.definitions import EventSource
from crmfs.errors import StorageError
from crmfs.runtimes.batch import identity_keys, list_pit, sql, state_blobs
from crmfs.runtimes.batch.sorted_pit import sorted_point_in_time_sql
from crmfs.storage.arrow_schema import log_schema
from crmfs.storage.event_log import EVENT_TIME, EventLog
from crmfs.transform.plan import ViewPlan

log = logging.getLogger(__name__)

PitStrategy = Literal["auto", "range_join", "lists", "sorted"]
# ``auto`` takes the list plan once the rows reach a quarter of the events: below that,
# joining each row to the events of its key inside the window is cheaper than sorting
# every event into lists.
LIST_PLAN_EVENTS_PER_ROW = 4
# ... unless each row would read more than this many list entries per (row + event) on
# average: a few keys with very many events and rows make the list plan's work grow as
# rows x events of their keys, where the sorted plan's stays one sort.
LIST_PLAN_MAX_WORK = 32
# Rows sampled to estimate that work.
WORK_SAMPLE_ROWS = 16_384


class DuckDBEngine:
    """Point-in-time training sets and tile backfills, computed in SQL by DuckDB."""

    def __init__(
        self, log: EventLog, threads: int | None = None, memory_limit: str | None = None
    ) -> None:
        self.log = log
        self._db = duckdb.connect(":memory:")
        try:
            if threads:
                self._db.execute(f"SET threads = {int(threads)}")
            if memory_limit:
                self._db.execute(f"SET memory_limit = {sql.literal(str(memory_limit))}")
        except (ValueError, duckdb.Error) as exc:
            raise StorageError(
                f"batch engine settings threads={threads!r}, memory_limit={memory_limit!r}"
                f" rejected: {exc}"
            ) from exc
        self._db.execute("SET preserve_insertion_order = false")
        self._lock = threading.Lock()
        # The list plan reads the entity rows a slice of this many at a time, bounding the
        # memory its join and results take beside the key lists.
        self.list_rows_per_part = 250_000
        # The sorted plan computes windows no longer than 1/share of the log's history by a
        # range join, which touches few events there (and spares a frame's cost).
        self.short_window_share = 8
        # The sorted plan runs a slice of the keys at a time (about this many entity rows),
        # bounding its memory.
        self.sorted_rows_per_part = 250_000

    @contextmanager
    def _events_of(
        self, source: EventSource, identity: IdentityMapping | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection where ``events`` is the source's log; with ``identity``, each event
        keyed by golden id (``identity_keys``)."""
        with self._lock:
            files = [str(f) for f in self.log.segment_files(source.name)]
            db = self._db
            if files:
                listing = ", ".join(sql.literal(f) for f in files)
                raw = f"read_parquet([{listing}], union_by_name = true)"
            else:
                db.register("__empty_events", log_schema(source).empty_table())
                raw = "__empty_events"
            if identity is not None:
                if identity.epochs:
                    identity_keys.register_epochs(db, identity.intervals)
                else:
                    identity_keys.register_current(db, identity.intervals)
                raw = f"({identity_keys.keyed_events_sql(raw, identity.key_column)})"
            db.execute(f"CREATE OR REPLACE TEMP VIEW events AS SELECT * FROM {raw}")
            try:
                yield db
            except duckdb.Error as exc:
                raise StorageError(f"batch query over {source.name!r} failed: {exc}") from exc
            finally:
                if identity is not None:
                    db.execute("DROP VIEW IF EXISTS events")
                    identity_keys.drop(db)

    def point_in_time(
        self,
        plan: ViewPlan,
        entity_rows: pa.Table,
        as_served: bool,
        strategy: PitStrategy = "auto",
        identity: pa.Table | None = None,
    ) -> pa.Table:
        """Feature columns (``plan.output_names``) for ``entity_rows(__row, __key, __t)``.

        Views keyed by golden ids need ``identity``: the mapping's intervals on the time
        axis the rows ask for (``IdentityGraph.intervals``); each row then reads the events
        of the records its golden id had at its time.

        Three physical plans compute the same values (the property tests hold each to the
        reference): ``range_join`` joins each row to its key's events in the widest window;
        ``lists`` turns each key's events into lists and slices them per row (see
        ``list_pit``); ``sorted`` sorts events and rows together and reads window frames.
        The last two answer event-time queries only. ``auto`` takes ``lists`` for event-time
        queries with many rows per event, and ``sorted`` instead where a few keys with very
        many events and rows would make the lists' work grow as their product.
        """
        if as_served and strategy in ("lists", "sorted"):
            raise ValueError(f"the {strategy} plan answers event-time queries only, not as_served")
        mapping = mapping_for(plan, identity, epochs=True)
        with self._events_of(plan.view.source, mapping) as db:
            if mapping is not None:
                entity_rows = identity_keys.epoch_rows(db, entity_rows)
            if strategy == "sorted":
                return self._sorted_point_in_time(db, plan, entity_rows)
            if strategy == "lists":
                return self._list_point_in_time(db, plan, entity_rows, None)
            events = self.log.counts().get(plan.view.source.name, 0)
            rows = entity_rows.num_rows
            if strategy == "auto" and not as_served and rows * LIST_PLAN_EVENTS_PER_ROW >= events:
                bound = LIST_PLAN_MAX_WORK * (rows + events)
                return self._list_point_in_time(db, plan, entity_rows, bound)
            log.debug("training set of %d rows by the range join plan", entity_rows.num_rows)
            db.register("entity_rows", entity_rows)
            try:
                parts = [_owned(db.sql(sql.point_in_time_sql(plan, as_served)).to_arrow_table())]
            finally:
                db.unregister("entity_rows")
            return _in_row_order(parts)

    def _list_point_in_time(
        self,
        db: duckdb.DuckDBPyConnection,
        plan: ViewPlan,
        entity_rows: pa.Table,
        max_work: int | None,
    ) -> pa.Table:
        """The list plan; or the sorted plan where the rows would read more than ``max_work``
        list entries in all (estimated)."""
        key_events, longest = list_pit.key_lists(db, plan)
        db.register("key_events", key_events)
        try:
            work = _list_work(db, entity_rows, key_events)
            if max_work is not None and work > max_work:
                log.debug(
                    "training set by the sorted plan: the lists' work %d > %d", work, max_work
                )
                return self._sorted_point_in_time(db, plan, entity_rows)
            log.debug("training set by the list plan (%d list entries read)", work)
            query = list_pit.list_point_in_time_sql(plan, longest)
            tables = []
            with _optimizer_off(db, "build_side_probe_side"):
                for start in range(0, max(1, entity_rows.num_rows), self.list_rows_per_part):
                    db.register("entity_rows", entity_rows.slice(start, self.list_rows_per_part))
                    tables.append(_owned(db.sql(query).to_arrow_table()))
        finally:
            db.unregister("key_events")
            db.unregister("entity_rows")
        return _in_row_order(tables)

    def _sorted_point_in_time(
        self, db: duckdb.DuckDBPyConnection, plan: ViewPlan, entity_rows: pa.Table
    ) -> pa.Table:
        parts = max(1, -(-entity_rows.num_rows // self.sorted_rows_per_part))
        joined = self._short_windows(db, plan)
        db.register("entity_rows", entity_rows)
        try:
            tables = [
                _owned(db.sql(sorted_point_in_time_sql(plan, part, parts, joined)).to_arrow_table())
                for part in range(parts)
            ]
        finally:
            db.unregister("entity_rows")
        return _in_row_order(tables)

    def _short_windows(self, db: duckdb.DuckDBPyConnection, plan: ViewPlan) -> frozenset[str]:
        """Window features whose window is short next to the log's history."""
        if not plan.windows:
            return frozenset()
        rows = db.execute(f"SELECT max({EVENT_TIME}) - min({EVENT_TIME}) FROM events").fetchall()
        span = rows[0][0] or 0
        return frozenset(
            w.feature.name for w in plan.windows if w.window_us * self.short_window_share <= span
        )

    def backfill(
        self,
        plan: ViewPlan,
        start_us: int,
        end_us: int,
        now: int,
        upto_seq: int,
        identity: pa.Table | None = None,
    ) -> pa.Table:
        """Online state per entity from log events with ``start <= event_time < end``.

        Only events with ``seq <= upto_seq`` count: those the online store has applied, so a
        batch committed meanwhile by another process is not counted twice.

        The table has a row per entity: ``key`` and ``state``, the state as the streaming
        runtime stores it (msgpack), encoded from the queries' columns without a Python object
        per entity or value (``state_blobs``).

        Views keyed by golden ids need ``identity``: one interval per record, its golden id
        as the states should have it (``IdentityGraph.intervals("current", ...)``); a subset
        of the records rebuilds only their golden ids.
        """
        with self._events_of(plan.view.source, mapping_for(plan, identity, epochs=False)) as db:
            groups = [
                state_blobs.tile_maps(
                    db.sql(
                        sql.tiles_sql(
                            plan, g, group.first_live_tile(now), start_us, end_us, upto_seq
                        )
                    ).to_arrow_table()
                )
                for g, group in enumerate(plan.hop_groups)
            ]
            latest = None
            if plan.latest:
                query = sql.latest_sql(plan, start_us, end_us, upto_seq)
                latest = state_blobs.latest_entries(db.sql(query).to_arrow_table())
                keys = latest[0]
            else:  # without latest values, entities whose tiles all aged out are still known
                query = sql.entity_keys_sql(plan, start_us, end_us, upto_seq)
                keys = db.sql(query).to_arrow_table().column(0).combine_chunks()
        keys, blobs = state_blobs.states(groups, latest, len(plan.latest), keys)
        return pa.table({"key": keys, "state": blobs})


@dataclass(frozen=True)
class IdentityMapping:
    """How a view keyed by a mapping reads its events (shared by the batch engines)."""

    intervals: pa.Table
    epochs: bool  # key each event by the epochs of its golden id (point in time)
    key_column: str


def mapping_for(plan: ViewPlan, identity: pa.Table | None, epochs: bool) -> IdentityMapping | None:
    """The mapping a view's events are keyed by, or None for a view keyed by a log field."""
    if not keyed_by_mapping(plan):
        return None
    if identity is None:
        raise ValueError(
            f"view {plan.view.name!r} is keyed by golden ids or a relation: give the mapping"
        )
    return IdentityMapping(identity, epochs, plan.view.key)


def keyed_by_mapping(plan: ViewPlan) -> bool:
    """Whether the view's keys come from a mapping (golden ids, a relation), not the log."""
    return plan.view.entity.identity or plan.view.via is not None


def _list_work(db: duckdb.DuckDBPyConnection, entity_rows: pa.Table, key_events: pa.Table) -> int:
    """About how many list entries the list plan's rows read (each its key's events, once),
    from an evenly spread sample of the rows."""
    rows: int = entity_rows.num_rows
    if rows == 0:
        return 0
    picked = np.unique(np.linspace(0, rows - 1, min(rows, WORK_SAMPLE_ROWS)).astype(np.int64))
    db.register("sampled_keys", pa.table({"__key": entity_rows["__key"].take(picked)}))
    lengths = pa.table(
        {"__key": key_events["__key"], "__n": pc.list_value_length(key_events["__ts"])}
    )
    db.register("key_lengths", lengths)
    try:
        found = db.execute(
            "SELECT coalesce(sum(__n), 0) FROM sampled_keys JOIN key_lengths USING (__key)"
        ).fetchall()
    finally:
        db.unregister("sampled_keys")
        db.unregister("key_lengths")
    return int(found[0][0]) * rows // len(picked)


@contextmanager
def _optimizer_off(db: duckdb.DuckDBPyConnection, name: str) -> Iterator[None]:
    """Run with one more of DuckDB's optimizers disabled, then put the setting back."""
    before = db.execute("SELECT current_setting('disabled_optimizers')").fetchall()[0][0] or ""
    disabled = ",".join(filter(None, [*before.split(","), name]))
    db.execute(f"SET disabled_optimizers = {sql.literal(disabled)}")
    try:
        yield
    finally:
        db.execute(f"SET disabled_optimizers = {sql.literal(before)}")


def _owned(table: pa.Table) -> pa.Table:
    """``table`` with each column copied into buffers of its own.

    The buffers of a table exported by DuckDB belong to its record batches: one is freed only
    once every column of its batch is gone. A copy's columns are freed one at a time, and the
    export is freed as soon as the copy is made (a slice of a training set at a time).
    """
    return pa.table(
        {
            name: pa.concat_arrays(column.chunks)
            if column.num_chunks
            else pa.array([], column.type)
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    )


def _in_row_order(parts: list[pa.Table]) -> pa.Table:
    """The rows of ``parts`` sorted by ``__row`` (a permutation of 0..n-1), a column at a time;
    ``__row`` itself may be left out.

    The list is emptied, and each column of the parts is dropped once it is reordered: with
    columns that own their buffers (``_owned``), the reordering needs memory for the table and
    one column, not for two tables.
    """
    rows = np.concatenate([part["__row"].to_numpy() for part in parts])
    if bool((rows[1:] > rows[:-1]).all()):  # DuckDB often keeps the probe side's order
        table = pa.concat_tables(parts)
        parts.clear()
        return table
    order = np.empty(len(rows), dtype=np.int32 if len(rows) < 2**31 else np.int64)
    order[rows] = np.arange(len(rows), dtype=order.dtype)
    del rows
    indices = pa.array(order)
    tables = parts.copy()
    parts.clear()
    columns: dict[str, pa.ChunkedArray] = {}
    for name in tables[0].column_names:
        column = pa.chunked_array(
            [chunk for table in tables for chunk in table[name].chunks], tables[0][name].type
        )
        tables = [table.drop_columns([name]) for table in tables]
        if name != "__row":  # the order itself: not needed once the rows are in it
            columns[name] = column.take(indices)
        del column
    return pa.table(columns)


def entity_rows(keys: Sequence[Any], times: Sequence[int]) -> pa.Table:
    return pa.table({"__row": range(len(keys)), "__key": keys, "__t": pa.array(times, pa.int64())})
