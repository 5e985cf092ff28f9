"""Definitions the registry tests apply: one entity, one source, views that differ."""

from __future__ import annotations

from typing import Any

from crmfs import Aggregation, Entity, EventSource, FeatureView, Latest
from crmfs.definitions import Catalog

customer = Entity("customer", join_key="customer_id")
orders = EventSource(
    "orders",
    schema={"event_id": "string", "ts": "timestamp", "customer_id": "string", "qty": "int"},
    event_id="event_id",
    event_time="ts",
)


def view(name: str = "activity", **changes: Any) -> FeatureView:
    """A view of order quantities; ``changes`` replace its features or metadata."""
    options: dict[str, Any] = {
        "features": [Aggregation("qty", "sum", ["30d"], field="qty"), Latest("last_qty", "qty")],
        "description": "orders per customer",
        "owner": "recsys",
    }
    options.update(changes)
    return FeatureView(name, customer, orders, **options)


def windowed(days: int, name: str = "activity") -> FeatureView:
    """The view summed over ``days``: each number is a different value version."""
    return view(name, features=[Aggregation("qty", "sum", [f"{days}d"], field="qty")])


def catalog(*definitions: object) -> Catalog:
    return Catalog.of(definitions)
