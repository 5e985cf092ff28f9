"""DuckDB = Spark for views keyed by golden ids and rolled up by a relation, across merges
and splits: training sets as of each row, as served and with today's mapping, and backfills.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pytest

from crmfs.runtimes.batch.spark_engine import SparkEngine
from crmfs.store import FeatureStore
from crmfs.timestamps import from_micros
from tests.properties.test_identity_parity import BASE, S
from tests.properties.test_identity_parity import VIEW as PERSON_VIEW
from tests.properties.test_relation_parity import ACCOUNTS
from tests.properties.test_relation_parity import VIEW as ACCOUNT_VIEW

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PERSON_REFS = [f"{PERSON_VIEW.name}:{n}" for n in PERSON_VIEW.feature_names]
ACCOUNT_REFS = [f"{ACCOUNT_VIEW.name}:{n}" for n in ACCOUNT_VIEW.feature_names]


def _contact(rng: random.Random) -> dict[str, Any]:
    """One of eight people by email or phone; now and then a record that ties two."""
    person, other = rng.randrange(8), rng.randrange(8)
    email = rng.choice([None, f"p{person}@x.org"])
    phone = f"+1415555{(other if rng.random() < 0.05 else person):04d}"
    return {"email": email, "phone": rng.choice([None, phone]) if email else phone}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    """Touches and memberships arriving over two minutes, with operator merges and splits
    between the batches."""
    rng = random.Random(7)
    clock = [BASE]
    store = FeatureStore(
        tmp_path_factory.mktemp("spark-identity"),
        definitions=[PERSON_VIEW, ACCOUNT_VIEW],
        clock=lambda: clock[0],
    )
    store.apply()
    for step in range(12):  # a batch of touches and a membership every 10 s
        clock[0] = BASE + (step + 1) * 10 * S
        times = [clock[0] - rng.randrange(0, 40) * S for _ in range(6)]
        store.ingest(
            "touches",
            [
                {
                    "event_id": f"t{step}-{i}",
                    "ts": from_micros(t),
                    "amount": rng.choice([None, rng.randrange(-40, 40) / 4]),
                    "item": rng.choice([None, "x", "y", "z"]),
                    **_contact(rng),
                }
                for i, t in enumerate(times)
            ],
        )
        store.ingest(
            "memberships",
            [
                {
                    "event_id": f"m{step}",
                    "ts": from_micros(clock[0] - 5 * S),
                    "account_id": rng.choice([*ACCOUNTS, "acme"]),
                    **_contact(rng),
                }
            ],
        )
        records = sorted(store.identity_graph.linker._records)
        if step % 3 == 2 and len(records) > 2:
            a, b = rng.sample(records, 2)
            if rng.random() < 0.6:
                store.identity.merge(a, b, "test merge")
            else:
                store.identity.split(a, b, "test split")
    yield store
    store.close()


@pytest.fixture(scope="module")
def spark(store: FeatureStore, spark_session: SparkSession) -> SparkEngine:
    return SparkEngine(store.log, session=spark_session)


def _training(store: FeatureStore, engine: Any, **options: Any) -> pa.Table:
    people = sorted(store.identity_graph.linker.clusters())
    times = [BASE + s * S for s in (-5, 15, 40, 61, 90, 125, 200)]
    keys = [(p, "golden_id") for p in people] + [(a, "account_id") for a in ACCOUNTS if a]
    entity_df = pd.DataFrame(
        {
            "golden_id": [
                k if column == "golden_id" else people[0] for k, column in keys for _ in times
            ],
            "account_id": [
                k if column == "account_id" else "acme" for k, column in keys for _ in times
            ],
            "event_timestamp": [from_micros(t) for _ in keys for t in times],
        }
    )
    duckdb = store.engine
    store.engine = engine
    try:
        return store.get_historical_features(
            entity_df, PERSON_REFS + ACCOUNT_REFS, full_feature_names=True, **options
        ).table
    finally:
        store.engine = duckdb


@pytest.mark.parametrize(
    ("identity", "as_served"), [("as_of", False), ("as_of", True), ("latest", False)]
)
def test_training_sets_are_equal(
    store: FeatureStore, spark: SparkEngine, identity: str, as_served: bool
) -> None:
    options = {"identity": identity, "as_served": as_served}
    expected = _training(store, store.engine, strategy="range_join", **options)
    got = _training(store, spark, **options)
    assert got.equals(expected)
    assert max(expected[f"{PERSON_VIEW.name}__n_1m"].to_pylist()) > 2
    assert max(expected[f"{ACCOUNT_VIEW.name}__n_1m"].to_pylist()) > 2


def test_a_spark_backfill_serves_what_streaming_served(
    store: FeatureStore, spark: SparkEngine
) -> None:
    at = from_micros(store.log.last_ingested_at())
    people = [{"golden_id": p} for p in sorted(store.identity_graph.linker.clusters())]
    accounts = [{"account_id": a} for a in ACCOUNTS if a]
    before = (
        store.get_online_features(PERSON_REFS, people, now=at).values,
        store.get_online_features(ACCOUNT_REFS, accounts, now=at).values,
    )
    duckdb = store.engine
    store.engine = spark  # as the store would run with batch_engine: {type: spark}
    try:
        store.materialize()
    finally:
        store.engine = duckdb
    after = (
        store.get_online_features(PERSON_REFS, people, now=at).values,
        store.get_online_features(ACCOUNT_REFS, accounts, now=at).values,
    )
    assert after == before
