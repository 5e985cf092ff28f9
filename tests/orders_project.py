"""A small orders project shared by the ingestion tests: one source, one view, a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from crmfs import Aggregation, Entity, EventSource, FeatureView, Latest
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
customer = Entity("customer", join_key="customer_id")


def orders_source(timezone: str | None = None) -> EventSource:
    """Orders with an int ``qty`` and a float ``price``; naive times read in ``timezone``."""
    return EventSource(
        "orders",
        schema={
            "event_id": "string",
            "ts": "timestamp",
            "customer_id": "string",
            "qty": "int",
            "price": "float",
        },
        event_id="event_id",
        event_time="ts",
        timezone=timezone,
        required=("customer_id",),
    )


consents = EventSource(
    "consents",
    schema={
        "event_id": "string",
        "ts": "timestamp",
        "customer_id": "string",
        "personalization": "bool",
    },
    event_id="event_id",
    event_time="ts",
)
# Each customer's latest consent to personalization (serving's consent tests).
consent_view = FeatureView(
    "consent", customer, consents, [Latest("personalization", "personalization")]
)


def orders_store(folder: Path, timezone: str | None = None) -> FeatureStore:
    """An applied store with ``orders_view``: qty summed over 30 days, the latest price."""
    view = FeatureView(
        "orders_view",
        customer,
        orders_source(timezone),
        [Aggregation("qty", "sum", ["30d"], field="qty"), Latest("price", "price")],
    )
    store = FeatureStore(folder, definitions=[view], clock=lambda: to_micros(NOW))
    store.apply()
    return store
