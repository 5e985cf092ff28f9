"""A project whose crmfs.yaml chooses ``batch_engine: {type: spark}``: the store trains and
materializes on Spark, with the values the default DuckDB engine gives."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from crmfs.runtimes.batch.spark_engine import SparkEngine
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros
from tests.orders_project import NOW

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFINITIONS = """\
from crmfs import Aggregation, Entity, EventSource, FeatureView, Latest

customer = Entity("customer", join_key="customer_id")
orders = EventSource(
    "orders",
    schema={"event_id": "string", "ts": "timestamp", "customer_id": "string", "qty": "int"},
    event_id="event_id", event_time="ts",
)
activity = FeatureView("activity", customer, orders,
                       [Aggregation("qty", "sum", ["1d", "30d"], field="qty"),
                        Latest("last_qty", "qty")])
"""
EVENTS = [
    {"event_id": f"e{i}", "ts": f"2026-05-{1 + i % 28:02d}T10:00:00Z",
     "customer_id": f"c{i % 5}", "qty": i % 7}
    for i in range(60)
]  # fmt: skip


def _store(folder: Path, engine: str) -> FeatureStore:
    folder.mkdir()
    (folder / "crmfs.yaml").write_text(
        f"project: shop\nbatch_engine: {{type: {engine}, shuffle_partitions: 2}}\n"
        if engine == "spark"
        else "project: shop\n"
    )
    (folder / "definitions.py").write_text(DEFINITIONS)
    store = FeatureStore(folder, clock=lambda: to_micros(NOW))
    store.apply()
    store.ingest("orders", EVENTS)
    return store


def test_a_project_on_spark_gives_the_duckdb_projects_values(
    tmp_path: Path, spark_session: SparkSession
) -> None:
    spark, duckdb = _store(tmp_path / "spark", "spark"), _store(tmp_path / "duckdb", "duckdb")
    assert isinstance(spark.engine, SparkEngine)
    rows = pa.table(
        {
            "customer_id": [f"c{i % 6}" for i in range(40)],
            "event_timestamp": [NOW.replace(day=1 + i % 28) for i in range(40)],
        }
    )
    features = ["activity:qty_1d", "activity:qty_30d", "activity:last_qty"]
    got = spark.get_historical_features(rows, features).to_arrow()
    assert got.equals(duckdb.get_historical_features(rows, features).to_arrow())
    spark.materialize()  # backfilled by Spark into the online store
    keys = [{"customer_id": f"c{i}"} for i in range(6)]
    assert (
        spark.get_online_features(features, keys, now=NOW).to_dict()
        == duckdb.get_online_features(features, keys, now=NOW).to_dict()
    )
    spark.close()  # the test run's session is shared: the store does not stop it
    assert not spark_session.sparkContext._jsc.sc().isStopped()
    duckdb.close()
