"""Golden-id keys for the batch runtime: events keyed by identity as of a time.

A view keyed by golden ids reads each event's key from the identity mapping, not from the
log: the mapping is a table of intervals ``(record_id, golden_id, from_us, to_us)`` (see
``IdentityGraph.intervals``), and an event belongs to golden id ``G`` at time ``t`` when
its identity record's interval with ``G`` holds ``t``.

The point-in-time plans join rows to events by key, so the time-dependent mapping is turned
into keys: the interval bounds of ``G`` cut time into **epochs** during which the records of
``G`` do not change; the key of epoch ``k`` of ``G`` is ``G#k``. Each event is copied to every
epoch its record spends in ``G`` (only golden ids that were merged or split have more than
one epoch), and each row ``(G, t)`` asks for the epoch of ``G`` that holds ``t``. Every plan
(range join, lists, sorted) then answers identity as of each row's time unchanged.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from crmfs.definitions import GOLDEN_ID, IDENTITY_RECORD

PAST = -(2**62)
FUTURE = 2**62


def register_epochs(db: duckdb.DuckDBPyConnection, intervals: pa.Table) -> None:
    """``__id_bounds(golden_id, bounds)`` and ``__id_keys(record_id, key)`` from the
    intervals: each record's epoch keys."""
    db.register("__id_intervals", intervals)
    db.execute(
        f"""CREATE OR REPLACE TEMP TABLE __id_bounds AS
        SELECT CAST(golden_id AS VARCHAR) AS golden_id,
               list_sort(list_distinct(list(b))) AS bounds FROM (
            SELECT golden_id, from_us AS b FROM __id_intervals WHERE from_us > {PAST}
            UNION ALL
            SELECT golden_id, to_us FROM __id_intervals WHERE to_us < {FUTURE})
        GROUP BY golden_id"""
    )
    db.execute(
        """CREATE OR REPLACE TEMP TABLE __id_keys AS
        SELECT record_id, golden_id || '#' || unnest(range(lo, hi + 1)) AS key FROM (
            SELECT i.record_id, CAST(i.golden_id AS VARCHAR) AS golden_id,
                   coalesce(len(list_filter(b.bounds, lambda x: x <= i.from_us)), 0) AS lo,
                   coalesce(len(list_filter(b.bounds, lambda x: x < i.to_us)), 0) AS hi
            FROM __id_intervals i
            LEFT JOIN __id_bounds b ON b.golden_id = CAST(i.golden_id AS VARCHAR))"""
    )
    db.unregister("__id_intervals")


def register_current(db: duckdb.DuckDBPyConnection, intervals: pa.Table) -> None:
    """``__id_keys(record_id, key)``: each record's one golden id (current intervals)."""
    db.register("__id_intervals", intervals)
    db.execute(
        "CREATE OR REPLACE TEMP TABLE __id_keys AS"
        " SELECT record_id, golden_id AS key FROM __id_intervals"
    )
    db.unregister("__id_intervals")


def keyed_events_sql(raw: str, key_column: str) -> str:
    """The events of ``raw`` with their key from ``__id_keys`` in ``key_column`` (the golden
    id, or a rolled-up view's parent key); an event whose record has several keys appears
    once per key."""
    if key_column == GOLDEN_ID:
        columns = f"e.* REPLACE (k.key AS {GOLDEN_ID})"
    else:
        columns = f'e.*, k.key AS "{key_column}"'
    return f"SELECT {columns} FROM {raw} e JOIN __id_keys k ON e.{IDENTITY_RECORD} = k.record_id"


def epoch_rows(db: duckdb.DuckDBPyConnection, rows: pa.Table) -> pa.Table:
    """Entity rows ``(__row, __key, __t)`` with ``__key`` turned into the epoch key of the
    golden id at ``__t``."""
    db.register("__id_rows", rows)
    try:
        return db.sql(
            """SELECT r.__row,
                      CAST(r.__key AS VARCHAR) || '#' || coalesce(len(list_filter(b.bounds, lambda x: x <= r.__t)), 0)
                          AS __key,
                      r.__t
               FROM __id_rows r
               LEFT JOIN __id_bounds b ON b.golden_id = CAST(r.__key AS VARCHAR)"""
        ).to_arrow_table()
    finally:
        db.unregister("__id_rows")


def drop(db: duckdb.DuckDBPyConnection) -> None:
    db.execute("DROP TABLE IF EXISTS __id_keys")
    db.execute("DROP TABLE IF EXISTS __id_bounds")
