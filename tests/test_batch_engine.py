"""Batch engine: plan choice, its guard rails, and settings checked before they reach DuckDB."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from crmfs import Aggregation, Entity, EventSource, FeatureView, Latest
from crmfs.definitions import FieldType
from crmfs.errors import EntityDataError, StorageError
from crmfs.parity import replay_parity
from crmfs.runtimes.batch import list_pit
from crmfs.runtimes.batch.engine import DuckDBEngine, _in_row_order, entity_rows
from crmfs.storage.event_log import EventLog
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros

START = datetime(2026, 3, 1, tzinfo=UTC)
customer = Entity("customer", join_key="customer_id")
visits = EventSource(
    "visits",
    schema={"event_id": "string", "ts": "timestamp", "customer_id": "string", "page": "string"},
    event_id="event_id",
    event_time="ts",
)
VIEW = FeatureView(
    "web",
    customer,
    visits,
    features=[
        Aggregation("visits", "count", ["1h", "1d"]),
        Aggregation("pages", "count_distinct", ["1d"], field="page"),
        Aggregation("recent_pages", "last_n", ["1d"], field="page", n=3),
        Latest("last_page", "page"),
    ],
    ttl="2h",
)


def _visits_store(folder: Path, visits: list[tuple[int, str, str]]) -> FeatureStore:
    """A store of VIEW holding ``visits`` as (minutes after START, customer, page)."""
    store = FeatureStore(
        folder, definitions=[VIEW], clock=lambda: to_micros(START + timedelta(days=1))
    )
    store.apply()
    store.ingest(
        "visits",
        [
            {
                "event_id": f"e{i}",
                "ts": START + timedelta(minutes=minutes),
                "customer_id": customer,
                "page": page,
            }
            for i, (minutes, customer, page) in enumerate(visits)
        ],
    )
    return store


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return _visits_store(tmp_path, [(7 * i, f"c{i % 3}", f"p{i % 5}") for i in range(60)])


def _entity_df(rows: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"c{i % 4}" for i in range(rows)],  # c3 has no events
            "event_timestamp": [START + timedelta(minutes=5 * i) for i in range(rows)],
        }
    )


def test_plans_agree_row_for_row(store: FeatureStore, caplog: pytest.LogCaptureFixture) -> None:
    features = [f"web:{name}" for name in VIEW.feature_names]
    entity_df = _entity_df(120)
    joined = store.get_historical_features(entity_df, features, strategy="range_join").to_df()
    others = {}
    for strategy in ("lists", "sorted"):
        others[strategy] = store.get_historical_features(entity_df, features, strategy=strategy)
    store.engine.list_rows_per_part = 7  # in 18 slices of rows
    store.engine.short_window_share = 0  # every window of the sorted plan by a join
    store.engine.sorted_rows_per_part = 7  # in 18 slices of keys, put back in row order
    for strategy in ("lists", "sorted"):
        others[f"{strategy}, sliced"] = store.get_historical_features(
            entity_df, features, strategy=strategy
        )
    with caplog.at_level(logging.DEBUG, logger="crmfs.runtimes.batch.engine"):
        others["auto"] = store.get_historical_features(entity_df, features)
    assert "by the list plan" in caplog.text
    for name, other in others.items():
        pd.testing.assert_frame_equal(joined, other.to_df(), obj=name)
    assert joined["visits_1d"].max() > 0
    assert joined["pages_1d"].max() > 1
    unknown = joined[joined["customer_id"] == "c3"]
    assert (unknown["visits_1h"] == 0).all()
    assert unknown["last_page"].isna().all()
    assert all(len(pages) == 0 for pages in unknown["recent_pages_1d"])


@pytest.mark.parametrize("strategy", ["lists", "sorted"])
def test_event_time_plans_refuse_as_served(store: FeatureStore, strategy: str) -> None:
    with pytest.raises(ValueError, match="as_served"):
        store.get_historical_features(
            _entity_df(3), ["web:visits_1h"], as_served=True, strategy=strategy
        )


def test_a_heavy_key_sends_auto_to_the_sorted_plan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Many rows of a key with many events: the list plan would read rows x events list
    entries, so ``auto`` sorts instead; the values are the same."""
    store = _visits_store(
        tmp_path, [(i, "heavy" if i % 40 else "light", f"p{i % 7}") for i in range(400)]
    )
    entity_df = pd.DataFrame(
        {
            "customer_id": ["heavy"] * 190 + ["light"] * 10,
            "event_timestamp": [START + timedelta(minutes=2 * i) for i in range(200)],
        }
    )
    features = [f"web:{name}" for name in VIEW.feature_names]
    with caplog.at_level(logging.DEBUG, logger="crmfs.runtimes.batch.engine"):
        auto = store.get_historical_features(entity_df, features).to_df()
    assert "by the sorted plan" in caplog.text
    joined = store.get_historical_features(entity_df, features, strategy="range_join").to_df()
    lists = store.get_historical_features(entity_df, features, strategy="lists").to_df()
    pd.testing.assert_frame_equal(joined, auto)
    pd.testing.assert_frame_equal(joined, lists)
    assert auto["visits_1h"].max() == 59
    store.close()


def test_list_plan_counts_the_same_in_any_field_width(store: FeatureStore) -> None:
    """The list plan counts the events before each bound in bit fields of one sum, as wide as
    the longest key list needs. Fields wider than needed (fewer bounds per sum, down to one)
    must count the same."""
    plan = store.plans()["web"]
    rows = entity_rows(
        [f"c{i % 4}" for i in range(50)],
        [to_micros(START + timedelta(minutes=9 * i)) for i in range(50)],
    )
    engine = store.engine
    results = []
    with engine._events_of(plan.view.source) as db:
        key_events, longest = list_pit.key_lists(db, plan)
        assert longest == 20  # 60 events over three keys
        db.register("key_events", key_events)
        db.register("entity_rows", rows)
        for width in (longest, 2**20, 2**40):  # 3 bounds in 1 sum, 3 per sum, 1 per sum
            query = list_pit.list_point_in_time_sql(plan, width)
            assert query.count("list_sum(list_transform") == (1 if width < 2**40 else 3)
            results.append(db.sql(query).to_arrow_table())
    assert results[0]["visits_1d"].to_pylist()[-1] > 0
    assert results[0].equals(results[1])
    assert results[0].equals(results[2])


def test_list_plan_on_an_empty_log(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, definitions=[VIEW], clock=lambda: to_micros(START))
    store.apply()
    features = [f"web:{name}" for name in VIEW.feature_names]
    got = store.get_historical_features(_entity_df(5), features, strategy="lists").to_df()
    assert got["visits_1h"].tolist() == [0] * 5
    assert got["last_page"].isna().all()
    assert all(len(pages) == 0 for pages in got["recent_pages_1d"])
    store.close()


def test_bad_engine_settings_are_refused(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    with pytest.raises(StorageError, match="memory_limit"):
        DuckDBEngine(log, memory_limit="1GB'; DROP TABLE x; --")
    log.close()


def test_backfill_keeps_entities_whose_tiles_aged_out(tmp_path: Path) -> None:
    """A view without latest values: after a backfill, an entity whose tiles all aged out is
    still known (count 0, fresh), as streaming left it, not missing."""
    view = FeatureView("web", customer, visits, [Aggregation("visits", "count", ["1h"])])
    clock = [to_micros(START + timedelta(minutes=10))]
    store = FeatureStore(tmp_path, definitions=[view], clock=lambda: clock[0])
    store.apply()
    store.ingest("visits", [{"event_id": "e1", "ts": START, "customer_id": "c1", "page": "p"}])
    clock[0] = to_micros(START + timedelta(days=2))
    store.ingest(  # moves the stream on: c1's tile is pruned
        "visits",
        [{"event_id": "e2", "ts": START + timedelta(days=2), "customer_id": "c2", "page": "p"}],
    )
    at = START + timedelta(days=2, minutes=1)
    before = store.get_online_features(["web:visits_1h"], [{"customer_id": "c1"}], now=at)
    store.materialize()
    after = store.get_online_features(["web:visits_1h"], [{"customer_id": "c1"}], now=at)
    assert before.values == after.values == {"web:visits_1h": [0]}
    assert before.statuses == after.statuses == {"web:visits_1h": ["fresh"]}
    store.close()


def test_int_keys_given_as_floats_find_their_events_in_every_slice(tmp_path: Path) -> None:
    """pandas turns an int key column with a gap into floats; the plans must still match the
    rows to the events (a slice of keys is chosen by hash, and 1.0 and 1 hash apart)."""
    accounts = EventSource(
        "accounts",
        schema={"event_id": "string", "ts": "timestamp", "account_id": "int"},
        event_id="event_id",
        event_time="ts",
    )
    view = FeatureView(
        "account_activity",
        Entity("account", join_key="account_id", dtype=FieldType.INT),
        accounts,
        features=[Aggregation("events", "count", ["1d"]), Latest("last_seen", "ts")],
    )
    store = FeatureStore(tmp_path, definitions=[view], clock=lambda: to_micros(START))
    store.apply()
    store.ingest(
        "accounts",
        [
            {"event_id": f"e{i}", "ts": START - timedelta(hours=i), "account_id": i % 6}
            for i in range(30)
        ],
    )
    entity_df = pd.DataFrame(
        {
            "account_id": [float(i % 6) if i % 7 else None for i in range(40)],
            "event_timestamp": [START] * 40,
        }
    )
    assert entity_df["account_id"].dtype == "float64"
    store.engine.list_rows_per_part = 5  # eight slices
    store.engine.sorted_rows_per_part = 5
    features = ["account_activity:events_1d", "account_activity:last_seen"]
    for strategy in ("range_join", "lists", "sorted"):
        got = store.get_historical_features(entity_df, features, strategy=strategy).to_df()
        expected = [4 if i % 7 else 0 for i in range(40)]  # 5 events per key, one 1 day back
        assert got["events_1d"].tolist() == expected, strategy
        assert got["last_seen"].notna().tolist() == [bool(i % 7) for i in range(40)], strategy
    bad = entity_df.assign(account_id=[0.5] * 40)
    with pytest.raises(EntityDataError, match="account_id"):
        store.get_historical_features(bad, features)
    # A timestamp field as a latest value: streaming keeps it as the batch runtime does.
    online = store.get_online_features(features, [{"account_id": 2}]).to_dict()
    assert online["account_activity:last_seen"] == [START - timedelta(hours=2)]
    report = replay_parity(store.log, store.engine, list(store.plans().values()))
    assert report.ok
    assert report.checks > 0


def test_parts_come_back_in_row_order_whatever_their_chunks() -> None:
    """Slices of keys come back from DuckDB interleaved by row, some of them empty."""
    schema = pa.schema([("__row", pa.int64()), ("v", pa.string()), ("l", pa.list_(pa.int64()))])
    first = pa.Table.from_batches(
        [
            pa.record_batch([[2, 0], ["c", "a"], [[2], None]], schema=schema),
            pa.record_batch([[4], ["e"], [[4, 4]]], schema=schema),
        ]
    )
    empty = schema.empty_table()
    second = pa.table({"__row": [3, 1], "v": ["d", None], "l": [[], [1]]}, schema=schema)
    parts = [first, empty, second]
    out = _in_row_order(parts)
    assert parts == []
    assert out.column_names == ["v", "l"]
    assert out.to_pydict() == {
        "v": ["a", None, "c", "d", "e"],
        "l": [None, [1], [2], [], [4, 4]],
    }
