"""A served project: orders with a confidential view, consent, and a feature service."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from crmfs import FeatureService, FeatureView, Latest
from crmfs.api.app import create_app
from crmfs.api.settings import CacheSettings, ServerSettings
from crmfs.definitions import Aggregation, Fallback
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros
from tests.orders_project import NOW, consent_view, customer, orders_source

activity = FeatureView(
    "activity",
    customer,
    orders_source(),
    [Aggregation("orders", "count", ["1h", "30d"]), Latest("last_qty", "qty")],
    freshness_sla="1h",
    fallback={"orders_1h": [Fallback.default(0)]},
)
spending = FeatureView(
    "spending",
    customer,
    orders_source(),
    [Aggregation("spend", "sum", ["30d"], field="price")],
    sensitivity="confidential",
)
recs = FeatureService(
    "recs",
    [activity, spending],
    purpose="personalization",
    consent="consent:personalization",
)
DEFINITIONS = [activity, spending, consent_view, recs]
NO_CACHE = ServerSettings(cache=CacheSettings(enabled=False))


def order(event_id: str, customer_id: str, qty: int, minutes_ago: float = 10) -> dict[str, object]:
    return {
        "event_id": event_id,
        "ts": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        "customer_id": customer_id,
        "qty": qty,
        "price": 2.5 * qty,
    }


def served_store(folder: Path) -> FeatureStore:
    store = FeatureStore(folder, definitions=DEFINITIONS, clock=lambda: to_micros(NOW))
    store.apply()
    store.ingest("orders", [order("e1", "c1", 2), order("e2", "c1", 3), order("e3", "c2", 1)])
    store.ingest(
        "consents",
        [
            {"event_id": f"k{c}", "ts": NOW.isoformat(), "customer_id": c, "personalization": True}
            for c in ("c1", "c2")
        ],
    )
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    store = served_store(tmp_path)
    yield store
    store.close()


@pytest.fixture
def client(store: FeatureStore) -> Iterator[TestClient]:
    with TestClient(create_app(store, NO_CACHE)) as client:
        yield client


REDIS_PROJECT_DEFINITIONS = """
from crmfs import Entity, EventSource, FeatureService, FeatureView, Latest
from crmfs.definitions import Aggregation

customer = Entity("customer", join_key="customer_id")
orders = EventSource(
    "orders",
    schema={"event_id": "string", "ts": "timestamp", "customer_id": "string", "qty": "int"},
    event_id="event_id", event_time="ts",
)
consents = EventSource(
    "consents",
    schema={"event_id": "string", "ts": "timestamp", "customer_id": "string",
            "personalization": "bool"},
    event_id="event_id", event_time="ts",
)
activity = FeatureView("activity", customer, orders,
                       [Aggregation("qty", "sum", ["30d"], field="qty")])
consent = FeatureView("consent", customer, consents,
                      [Latest("personalization", "personalization")])
recs = FeatureService("recs", [activity], purpose="personalization",
                      consent="consent:personalization")
"""


def redis_project(folder: Path, online_store: str, server: str = "{}") -> FeatureStore:
    """A project folder on disk (as ``crmfs serve`` opens one) whose online store is the
    Redis ``online_store`` names, applied, with c1's 3 orders and consent ingested."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "crmfs.yaml").write_text(
        f"project: served\ndefinitions: definitions.py\nonline_store: {online_store}\n"
        f"server: {server}\n"
    )
    (folder / "definitions.py").write_text(REDIS_PROJECT_DEFINITIONS)
    store = FeatureStore(folder)
    store.apply()
    now = datetime.now(UTC).isoformat()
    store.ingest("orders", [{"event_id": "o1", "ts": now, "customer_id": "c1", "qty": 3}])
    store.ingest(
        "consents", [{"event_id": "k1", "ts": now, "customer_id": "c1", "personalization": True}]
    )
    return store
