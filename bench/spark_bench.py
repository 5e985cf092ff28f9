"""Spark side of the benchmark: the 1M-row training set by the Spark batch engine.

``run_spark_bench(store_dir, entities_path)`` opens the store the crmfs bench built
(``run_crmfs_bench`` leaves it under ``work_dir/store``), runs the same training set as
``pit_1m_s`` on a :class:`~crmfs.runtimes.batch.spark_engine.SparkEngine` in ``local[2]``
and returns its figures as ``{"name", "value", "unit"}`` dicts:

- ``spark_pit_1m_s``: the 1M-row training set, on a session already started and warmed up by
  a small training set (a Spark job's first run pays for JIT compilation of its code);
- ``spark_session_start_s``: starting the session and that warm-up, for reference.

The result is checked against the DuckDB engine's: equal values, floats (sums and means of
arbitrary amounts, added in another order) within a relative 1e-9. Standalone::

    python bench/spark_bench.py STORE_DIR ENTITIES_PARQUET
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from crmfs.runtimes.batch.spark_engine import SparkEngine, open_spark_engine
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros
from crmfs_bench import FEATURES, Clock, figure, open_store
from scenario import ANCHOR

WARMUP_ROWS = 10_000
SPARK_OPTIONS = {"master": "local[2]", "shuffle_partitions": 8, "driver_memory": "6g"}


def log(message: str) -> None:
    print(f"[spark_bench] {message}", file=sys.stderr, flush=True)


def _training_set(store: FeatureStore, engine: Any, entities: pa.Table) -> pa.Table:
    duckdb = store.engine
    store.engine = engine
    try:
        return store.get_historical_features(entities, FEATURES).to_arrow()
    finally:
        store.engine = duckdb


def _check_against_duckdb(store: FeatureStore, entities: pa.Table, got: pa.Table) -> None:
    expected = store.get_historical_features(entities, FEATURES).to_arrow()
    for name in expected.column_names:
        a, b = expected[name].to_pylist(), got[name].to_pylist()
        if pa.types.is_floating(expected.schema.field(name).type):
            same = all(
                x == y or (x is not None and y is not None and math.isclose(x, y, rel_tol=1e-9))
                for x, y in zip(a, b, strict=True)
            )
        else:
            same = a == b
        if not same:
            raise RuntimeError(f"Spark and DuckDB differ in {name}")


def run_spark_bench(store_dir: Path, entities_path: Path) -> list[dict[str, Any]]:
    """Figures of the Spark engine on the crmfs bench's store and 1M entity rows."""
    entities = pq.read_table(entities_path)
    store = open_store(Path(store_dir), Clock(to_micros(ANCHOR)))
    engine: SparkEngine = open_spark_engine(SPARK_OPTIONS, store.log)
    try:
        start = time.perf_counter()
        _training_set(store, engine, entities.slice(0, WARMUP_ROWS))
        started = time.perf_counter() - start
        log(f"session start and warm-up ({WARMUP_ROWS} rows): {started:.2f} s")
        start = time.perf_counter()
        table = _training_set(store, engine, entities)
        seconds = time.perf_counter() - start
        if table.num_rows != entities.num_rows:
            raise RuntimeError(f"Spark returned {table.num_rows} rows for {entities.num_rows}")
        log(f"Spark training set, {entities.num_rows} rows: {seconds:.2f} s")
        _check_against_duckdb(store, entities, table)
    finally:
        engine.close()
        store.close()
    return [
        figure("spark_pit_1m_s", seconds, "s"),
        figure("spark_session_start_s", started, "s"),
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python bench/spark_bench.py STORE_DIR ENTITIES_PARQUET", file=sys.stderr)
        return 2
    print(json.dumps(run_spark_bench(Path(args[0]), Path(args[1])), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
