"""The floor the issue names, measured in the same run: a hand-written DuckDB ASOF join.

The issue calibrates its point-in-time targets against "a hand-written DuckDB ASOF join of
100k rows over 1M events" on its reference machine. Measured here beside the other figures,
it tells how fast this machine is: crmfs's ``pit_100k_s`` computes the same latest values and
seven window aggregations besides, so it can be read against this floor, not only against
the absolute target. Events and entity rows are loaded into DuckDB tables first (loading is
not timed), and the join returns the three latest values per entity row.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import duckdb

REPEATS = 3
_QUERY = """
SELECT r.customer_id, r.event_timestamp, e.channel, e.event_type, e.item_id
FROM entity_rows r ASOF LEFT JOIN events e
  ON r.customer_id = e.customer_id AND r.event_timestamp >= e.event_time
"""


def asof_join_seconds(events: Path, entities: Path, repeats: int = REPEATS) -> float:
    """Median seconds of the ASOF join of ``entities`` over ``events`` (Parquet files)."""
    db = duckdb.connect()
    try:
        db.execute(
            "CREATE TABLE events AS SELECT customer_id, event_time, channel, event_type, item_id"
            " FROM read_parquet(?)",
            [str(events)],
        )
        db.execute(
            "CREATE TABLE entity_rows AS SELECT customer_id, event_timestamp FROM read_parquet(?)",
            [str(entities)],
        )
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            rows = db.sql(_QUERY).to_arrow_table().num_rows
            runs.append(time.perf_counter() - start)
        expected = db.execute("SELECT count(*) FROM entity_rows").fetchone()
        if expected is None or rows != expected[0]:
            raise RuntimeError(f"ASOF join returned {rows} rows for {expected} entity rows")
        return statistics.median(runs)
    finally:
        db.close()
