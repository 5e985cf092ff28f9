"""A project with ``online_store: {type: redis}`` serves what the SQLite default serves.

The orders project is ingested into two projects that differ only in their online store;
the online values and statuses of every customer must be the same (the SQLite store is the
golden reference), after streaming and again after a backfill.
"""

from __future__ import annotations

import os
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from crmfs.backends import entity_key_ttl
from crmfs.errors import BackendUnavailable
from crmfs.storage.redis_online import RedisOnlineStore
from crmfs.storage.sqlite_online import SqliteOnlineStore
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros
from tests.orders_project import NOW
from tests.storage.redis_servers import SHARED_URL, ThrowawayRedis, keys_under

DEFINITIONS = """\
from crmfs import Aggregation, FeatureView, Latest
from tests.orders_project import customer, orders_source

orders = orders_source()
orders_view = FeatureView(
    "orders_view", customer, orders,
    [Aggregation("qty", "sum", ["30d"], field="qty"), Latest("price", "price")],
)
orders_recent = FeatureView(
    "orders_recent", customer, orders,
    [Aggregation("orders", "count", ["1h", "7d"]), Aggregation("top_price", "max", ["7d"],
     field="price"), Latest("last_qty", "qty")],
    ttl="30d",
)
"""
REFS = [
    "orders_view:qty_30d",
    "orders_view:price",
    "orders_recent:orders_1h",
    "orders_recent:orders_7d",
    "orders_recent:top_price_7d",
    "orders_recent:last_qty",
]
CUSTOMERS = [f"c{n}" for n in range(300)]


def _project(folder: Path, online_store: str) -> FeatureStore:
    folder.mkdir()
    (folder / "crmfs.yaml").write_text(f"project: orders\nonline_store: {online_store}\n")
    (folder / "definitions.py").write_text(DEFINITIONS)
    store = FeatureStore(folder, clock=lambda: to_micros(NOW))
    store.apply()
    return store


def _batches() -> list[list[dict[str, Any]]]:
    """A large batch (folded while it is appended, on two cores), small ones, a redelivery."""
    rng = random.Random(4)
    events = [
        {
            "event_id": f"e{n}",
            "ts": (NOW - timedelta(minutes=rng.randrange(40 * 24 * 60))).isoformat(),
            "customer_id": rng.choice(CUSTOMERS),
            "qty": rng.randrange(1, 9),
            "price": round(rng.uniform(1, 200), 2),
        }
        for n in range(6_500)
    ]
    return [events[:5_000], *(events[n : n + 300] for n in range(5_000, 6_500, 300)), events[:50]]


def _served(store: FeatureStore) -> tuple[dict[str, list[Any]], dict[str, list[str]]]:
    rows = [{"customer_id": key} for key in [*CUSTOMERS, "nobody"]]
    response = store.get_online_features(REFS, rows, now=NOW)
    return response.values, response.statuses


def test_a_redis_project_serves_the_values_of_the_sqlite_default(
    tmp_path: Path, redis_prefix: str
) -> None:
    golden = _project(tmp_path / "sqlite", "{type: sqlite}")
    tested = _project(
        tmp_path / "redis", f"{{type: redis, url: '{SHARED_URL}', key_prefix: {redis_prefix}}}"
    )
    try:
        assert isinstance(golden.online, SqliteOnlineStore)
        assert isinstance(tested.online, RedisOnlineStore)
        for batch in _batches():
            reports = [store.ingest("orders", batch) for store in (golden, tested)]
            assert reports[0].accepted == reports[1].accepted
        if (os.cpu_count() or 1) >= 2:  # the large batch was folded by a worker process too
            assert tested.pipeline.processor._worker is not None
        expected = _served(golden)
        assert _served(tested) == expected
        assert sum(expected[0]["orders_view:qty_30d"]) > 10_000  # not a vacuous comparison
        assert tested.online.watermark() == golden.online.watermark()
        for store in (golden, tested):
            store.materialize()
        assert _served(tested) == _served(golden) == expected
        _assert_key_ttls(tested, redis_prefix)
    finally:
        golden.close()
        tested.close()


def _assert_key_ttls(store: FeatureStore, prefix: str) -> None:
    """Entity keys of the view with a TTL expire after it (and its windows); the others not."""
    plans = store.plans()
    client = redis.Redis.from_url(SHARED_URL)
    try:
        spaces = client.hgetall(b"{" + prefix.encode() + b"}:t")
        recent = spaces[plans["orders_recent"].table.encode()]
        view = spaces[plans["orders_view"].table.encode()]
        ttl = entity_key_ttl(plans["orders_recent"])
        assert ttl is not None
        entity_keys = [key for key in keys_under(prefix) if key.count(b":") == 2]
        for key in entity_keys[:50]:
            space = key.split(b":")[1]
            if space == recent:
                assert ttl * 1000 - 60_000 < client.pttl(key) <= ttl * 1000
            else:
                assert space == view
                assert client.pttl(key) == -1
    finally:
        client.close()


def test_an_ingest_while_redis_is_down_fails_clearly_and_loses_nothing(
    tmp_path: Path, durable_redis: ThrowawayRedis
) -> None:
    """What a user sees: ``BackendUnavailable``; the same batch sent again once Redis is
    back counts once, whether the failed call had logged it or not."""
    options = f"{{type: redis, url: '{durable_redis.url}', retries: 1, backoff_s: 0.01}}"
    store = _project(tmp_path / "project", options)
    first, second, third = (_batches()[1][n : n + 100] for n in (0, 100, 200))
    try:
        store.ingest("orders", first)
        durable_redis.stop()
        with pytest.raises(BackendUnavailable, match="Retry later"):
            store.ingest("orders", second)  # fails before anything is logged
        with pytest.raises(BackendUnavailable):
            store.get_online_features(REFS, [{"customer_id": "c1"}], now=NOW)
        durable_redis.start()
        store.ingest("orders", second)
        report = store.ingest("orders", second)  # a redelivery
        assert (report.accepted, report.duplicates) == (0, 100)
        store.ingest("orders", third)
        served = _served(store)
    finally:
        store.close()
    reference = _project(tmp_path / "reference", "{type: sqlite}")
    try:
        for batch in (first, second, third):
            reference.ingest("orders", batch)
        assert served == _served(reference)
    finally:
        reference.close()
