"""The DuckDB batch engine: runs the compiled SQL over the event log's segments."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa

from crmfs.definitions import EventSource
from crmfs.errors import StorageError
from crmfs.runtimes.batch import sql
from crmfs.runtimes.streaming.state import State, new_state
from crmfs.storage.arrow_schema import log_schema
from crmfs.storage.event_log import EventLog
from crmfs.transform.plan import ViewPlan


class DuckDBEngine:
    """Point-in-time training sets and tile backfills, computed in SQL by DuckDB."""

    def __init__(
        self, log: EventLog, threads: int | None = None, memory_limit: str | None = None
    ) -> None:
        self.log = log
        self._db = duckdb.connect(":memory:")
        if threads:
            self._db.execute(f"SET threads = {int(threads)}")
        if memory_limit:
            self._db.execute(f"SET memory_limit = '{memory_limit}'")
        self._db.execute("SET preserve_insertion_order = false")
        self._lock = threading.Lock()

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

    def point_in_time(self, plan: ViewPlan, entity_rows: pa.Table, as_served: bool) -> pa.Table:
        """Feature columns (``plan.output_names``) for ``entity_rows(__row, __key, __t)``."""
        with self._events_of(plan.view.source) as db:
            db.register("entity_rows", entity_rows)
            try:
                result = db.sql(sql.point_in_time_sql(plan, as_served)).to_arrow_table()
            finally:
                db.unregister("entity_rows")
        return result

    def backfill(
        self, plan: ViewPlan, start_us: int, end_us: int, now: int, upto_seq: int
    ) -> dict[Any, State]:
        """Online state per entity from log events with ``start <= event_time < end``.

        Only events with ``seq <= upto_seq`` count: those the online store has applied, so a
        batch committed meanwhile by another process is not counted twice.
        """
        states: dict[Any, State] = {}
        with self._events_of(plan.view.source) as db:
            for g, group in enumerate(plan.hop_groups):
                query = sql.tiles_sql(
                    plan, g, group.first_live_tile(now), start_us, end_us, upto_seq
                )
                for row in _rows(db.sql(query).to_arrow_table()):
                    state = states.get(row[0])
                    if state is None:
                        state = states[row[0]] = new_state(plan)
                    state[0][g][row[1]] = [
                        _partial(w.feature.function.value, p)
                        for w, p in zip(group.features, row[2:], strict=True)
                    ]
            if plan.latest:
                for row in _rows(
                    db.sql(sql.latest_sql(plan, start_us, end_us, upto_seq)).to_arrow_table()
                ):
                    state = states.get(row[0])
                    if state is None:
                        state = states[row[0]] = new_state(plan)
                    state[1] = [None if e is None else [e["t"], e["s"], e["v"]] for e in row[1:]]
        return states


def _rows(table: pa.Table) -> Iterator[tuple[Any, ...]]:
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return zip(*columns, strict=True)


def _partial(function: str, value: Any) -> Any:
    """SQL's partial in the algebra's representation."""
    if function == "last":
        return None if value is None else [value["t"], value["s"], value["v"]]
    if function == "mean":
        return [value["s"], value["c"]]
    if function == "last_n":
        return [[e["t"], e["s"], e["v"]] for e in value]
    return value


def entity_rows(keys: Sequence[Any], times: Sequence[int]) -> pa.Table:
    return pa.table({"__row": range(len(keys)), "__key": keys, "__t": pa.array(times, pa.int64())})
