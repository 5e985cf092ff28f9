"""The DuckDB batch engine: runs the compiled SQL over the event log's segments."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa

from crmfs.definitions import EventSource
from crmfs.errors import StorageError
from crmfs.runtimes.batch import sql, state_blobs
from crmfs.runtimes.batch.sorted_pit import sorted_point_in_time_sql
from crmfs.storage.arrow_schema import log_schema
from crmfs.storage.event_log import EVENT_TIME, EventLog
from crmfs.transform.plan import ViewPlan

PitStrategy = Literal["auto", "range_join", "sorted"]
# ``auto`` sorts (events + rows) once the rows reach a quarter of the events: below that,
# joining each row to the events of its key inside the window is cheaper than the sort.
SORTED_PLAN_EVENTS_PER_ROW = 4


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
        # The sorted plan computes windows no longer than 1/share of the log's history by a
        # range join, which touches few events there (and spares a frame's cost).
        self.short_window_share = 8
        # The sorted plan runs a slice of the keys at a time (about this many entity rows),
        # bounding its memory.
        self.sorted_rows_per_part = 250_000

    @contextmanager
    def _events_of(self, source: EventSource) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection where ``events`` is the source's log."""
        with self._lock:
            files = [str(f) for f in self.log.segment_files(source.name)]
            db = self._db
            if files:
                listing = ", ".join(sql.literal(f) for f in files)
                db.execute(
                    f"CREATE OR REPLACE TEMP VIEW events AS"
                    f" SELECT * FROM read_parquet([{listing}], union_by_name = true)"
                )
            else:
                db.register("__empty_events", log_schema(source).empty_table())
                db.execute("CREATE OR REPLACE TEMP VIEW events AS SELECT * FROM __empty_events")
            try:
                yield db
            except duckdb.Error as exc:
                raise StorageError(f"batch query over {source.name!r} failed: {exc}") from exc

    def point_in_time(
        self,
        plan: ViewPlan,
        entity_rows: pa.Table,
        as_served: bool,
        strategy: PitStrategy = "auto",
    ) -> pa.Table:
        """Feature columns (``plan.output_names``) for ``entity_rows(__row, __key, __t)``.

        Two physical plans compute the same values (the property tests hold both to the
        reference): ``range_join`` joins each row to its key's events in the widest window,
        ``sorted`` sorts events and rows together and reads window frames (event time only).
        ``auto`` takes ``sorted`` for event-time queries with many rows per event.
        """
        if as_served and strategy == "sorted":
            raise ValueError("the sorted plan answers event-time queries only, not as_served")
        with self._events_of(plan.view.source) as db:
            db.register("entity_rows", entity_rows)
            try:
                if strategy == "sorted" or (
                    strategy == "auto"
                    and not as_served
                    and entity_rows.num_rows * SORTED_PLAN_EVENTS_PER_ROW
                    >= self.log.counts().get(plan.view.source.name, 0)
                ):
                    return self._sorted_point_in_time(db, plan, entity_rows.num_rows)
                parts = [_owned(db.sql(sql.point_in_time_sql(plan, as_served)).to_arrow_table())]
                return _in_row_order(parts)
            finally:
                db.unregister("entity_rows")

    def _sorted_point_in_time(
        self, db: duckdb.DuckDBPyConnection, plan: ViewPlan, rows: int
    ) -> pa.Table:
        parts = max(1, -(-rows // self.sorted_rows_per_part))
        joined = self._short_windows(db, plan)
        tables = [
            _owned(db.sql(sorted_point_in_time_sql(plan, part, parts, joined)).to_arrow_table())
            for part in range(parts)
        ]
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
        self, plan: ViewPlan, start_us: int, end_us: int, now: int, upto_seq: int
    ) -> pa.Table:
        """Online state per entity from log events with ``start <= event_time < end``.

        Only events with ``seq <= upto_seq`` count: those the online store has applied, so a
        batch committed meanwhile by another process is not counted twice.

        The table has a row per entity: ``key`` and ``state``, the state as the streaming
        runtime stores it (msgpack), encoded from the queries' columns without a Python object
        per entity or value (``state_blobs``).
        """
        with self._events_of(plan.view.source) as db:
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
