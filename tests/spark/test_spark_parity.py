"""DuckDB = Spark: the same training sets and backfills from the same event log, exactly.

Every case runs the store's DuckDB engine and a :class:`SparkEngine` on one SparkSession
(``conftest.py``) over the same log files, and requires identical tables: same columns, same
Arrow types, equal values. Floats compare exactly too: the test data keeps every sum exact
(``views.py``: ``amount`` holds quarters, ``price`` is only picked, never added), so the
order in which an engine adds does not matter. With arbitrary floats a sum may differ in its
last bit between engines (and between two DuckDB runs): neither fixes its addition order.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pytest

from crmfs.definitions import Function
from crmfs.errors import StorageError
from crmfs.runtimes.batch.spark_engine import SparkEngine
from crmfs.runtimes.streaming.state import decode, expanded
from crmfs.store import FeatureStore
from crmfs.timestamps import from_micros
from crmfs.transform.plan import ViewPlan
from tests.orders_project import NOW, orders_store
from tests.spark.views import BASE, KEYS, VIEWS, S, event_records

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

REFS = [f"{view.name}:{name}" for view in VIEWS for name in view.feature_names]


def _store(folder: Path, seed: int) -> FeatureStore:
    """A store of the suite's views fed in arrival order, a batch per arrival time."""
    records = event_records(seed)
    clock = [BASE]
    store = FeatureStore(folder, definitions=VIEWS, clock=lambda: clock[0])
    store.apply()
    batches: dict[int, list[dict[str, Any]]] = {}
    for arrival, record in records:
        batches.setdefault(arrival // (7 * S), []).append(record)  # arrivals 7 s apart
    for step, batch in sorted(batches.items()):
        clock[0] = BASE + (step + 1) * 7 * S
        store.ingest("events", batch)
    return store


def _entity_df() -> pd.DataFrame:
    """Rows for every key and one without events, at times before the first event, on event
    times and window bounds (ties), between them and after the last."""
    seconds = [-10, 0, 5, 10, 39, 40, 41, 59.5, 60, 90, 95.25, 120, 149, 150, 200, 260, 400]
    times = [BASE + int(s * S) for s in seconds]
    return pd.DataFrame(
        {
            "customer_id": [k for k in [*KEYS, "nobody"] for _ in times],
            "event_timestamp": [from_micros(t) for _ in [*KEYS, "nobody"] for t in times],
        }
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    store = _store(tmp_path_factory.mktemp("spark-1"), seed=1)
    yield store
    store.close()


@pytest.fixture(scope="module")
def other_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    """Another history: the training sets are compared on two."""
    store = _store(tmp_path_factory.mktemp("spark-2"), seed=2)
    yield store
    store.close()


@pytest.fixture(scope="module")
def spark(store: FeatureStore, spark_session: SparkSession) -> SparkEngine:
    return SparkEngine(store.log, session=spark_session)


def _with_engine(
    store: FeatureStore,
    engine: Any,
    entity_df: pd.DataFrame | None = None,
    refs: list[str] = REFS,
    **options: Any,
) -> pa.Table:
    """The store's training set with ``engine`` in place of its DuckDB engine."""
    duckdb = store.engine
    store.engine = engine
    try:
        frame = _entity_df() if entity_df is None else entity_df
        return store.get_historical_features(frame, refs, full_feature_names=True, **options).table
    finally:
        store.engine = duckdb


@pytest.mark.parametrize("as_served", [False, True])
@pytest.mark.parametrize("history", ["store", "other_store"])
def test_training_sets_are_equal(
    request: pytest.FixtureRequest, spark_session: SparkSession, history: str, as_served: bool
) -> None:
    store: FeatureStore = request.getfixturevalue(history)
    spark = SparkEngine(store.log, session=spark_session)
    expected = _with_engine(store, store.engine, as_served=as_served, strategy="range_join")
    got = _with_engine(store, spark, as_served=as_served)
    assert got.schema == expected.schema
    for name in expected.column_names:
        assert got[name].to_pylist() == expected[name].to_pylist(), name
    assert got.equals(expected)
    # The data reach every case: values in windows, rows before any event, ties.
    nobody = expected.filter(pa.compute.equal(expected["customer_id"], "nobody"))
    assert set(nobody["activity__n_10s"].to_pylist()) == {0}
    assert set(nobody["activity__kind_now"].to_pylist()) == {None}
    assert max(expected["activity__n_5m"].to_pylist()) > 10
    assert max(expected["activity__items_1m"].to_pylist()) > 2


def _normalized(plan: ViewPlan, blob: bytes) -> Any:
    """A decoded state with each distinct-count partial as a set (its order is arbitrary)."""
    tiles, latest = expanded(decode(blob))
    for group, by_tile in zip(plan.hop_groups, tiles, strict=True):
        for partials in by_tile.values():
            for w in group.features:
                if w.feature.function is Function.COUNT_DISTINCT:
                    partials[w.slot] = frozenset(partials[w.slot])
    return [tiles, latest]


def _states(engine: Any, plan: ViewPlan, *bounds: int) -> dict[Any, Any]:
    table = engine.backfill(plan, *bounds)
    keys, blobs = table["key"].to_pylist(), table["state"].to_pylist()
    return {key: _normalized(plan, blob) for key, blob in zip(keys, blobs, strict=True)}


def test_backfills_build_the_same_states(store: FeatureStore, spark: SparkEngine) -> None:
    mark = store.online.watermark()
    now = store.log.last_ingested_at()
    for plan in store.plans().values():
        for bounds in (
            (-(2**62), 2**62, now, mark.seq),
            (BASE + 20 * S, BASE + 100 * S, BASE + 100 * S, mark.seq // 2),  # a slice
        ):
            expected = _states(store.engine, plan, *bounds)
            assert expected, plan.view.name
            assert _states(spark, plan, *bounds) == expected, (plan.view.name, bounds)


def test_a_spark_backfill_serves_what_streaming_served(
    store: FeatureStore, spark: SparkEngine
) -> None:
    rows = [{"customer_id": k} for k in KEYS]
    at = from_micros(store.log.last_ingested_at())
    before = store.get_online_features(REFS, rows, now=at)
    duckdb = store.engine
    store.engine = spark  # as the store would run with batch_engine: {type: spark}
    try:
        store.materialize()
    finally:
        store.engine = duckdb
    after = store.get_online_features(REFS, rows, now=at)
    assert after.values == before.values


def test_orders_project(tmp_path: Path, spark_session: SparkSession) -> None:
    """The shared orders project: an int sum over 30 days and the latest float price."""
    store = orders_store(tmp_path)
    store.ingest(
        "orders",
        [
            {
                "event_id": f"o{i}",
                "ts": NOW - timedelta(days=i % 40, hours=i % 5),
                "customer_id": f"c{i % 4}",
                "qty": i % 7 if i % 9 else None,
                "price": i / 10 if i % 11 else None,
            }
            for i in range(120)
        ],
    )
    entity_df = pd.DataFrame(
        {
            "customer_id": [f"c{i % 5}" for i in range(60)],
            "event_timestamp": [NOW - timedelta(days=i) for i in range(60)],
        }
    )
    refs = ["orders_view:qty_30d", "orders_view:price"]
    expected = _with_engine(store, store.engine, entity_df, refs, strategy="range_join")
    got = _with_engine(store, SparkEngine(store.log, session=spark_session), entity_df, refs)
    assert got.equals(expected)
    store.close()


def test_an_empty_log(tmp_path: Path, spark_session: SparkSession) -> None:
    store = FeatureStore(tmp_path, definitions=VIEWS, clock=lambda: BASE)
    store.apply()
    spark = SparkEngine(store.log, session=spark_session)
    expected = _with_engine(store, store.engine, strategy="range_join")
    assert _with_engine(store, spark).equals(expected)
    plan = store.plans()["activity"]
    assert spark.backfill(plan, -(2**62), 2**62, BASE, 0).num_rows == 0
    store.close()


def test_spark_runs_the_range_join_plan_only(store: FeatureStore, spark: SparkEngine) -> None:
    with pytest.raises(ValueError, match="range_join"):
        _with_engine(store, spark, strategy="lists")


def test_a_failed_query_is_a_storage_error(
    tmp_path: Path, store: FeatureStore, spark_session: SparkSession
) -> None:
    broken = SparkEngine(store.log, session=spark_session)
    for path in store.log.segment_files("events"):
        path.rename(tmp_path / path.name)  # the files are gone: Spark cannot read them
    try:
        with pytest.raises(StorageError, match="events"):
            _with_engine(store, broken)
    finally:
        for path in store.log.segment_files("events"):
            (tmp_path / path.name).rename(path)
