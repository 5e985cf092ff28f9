"""Two FeatureStore objects on one project (as two processes would be): neither serves or
folds state the other has replaced, although each keeps the blobs it has seen in memory."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from crmfs import Aggregation, Entity, EventSource, FeatureView, Latest
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
REFS = ["orders_view:qty_30d", "orders_view:last_qty"]


def _store(folder: Path) -> FeatureStore:
    source = EventSource(
        "orders",
        schema={"event_id": "string", "ts": "timestamp", "customer_id": "string", "qty": "int"},
        event_id="event_id",
        event_time="ts",
    )
    view = FeatureView(
        "orders_view",
        Entity("customer", join_key="customer_id"),
        source,
        [Aggregation("qty", "sum", ["30d"], field="qty"), Latest("last_qty", "qty")],
    )
    return FeatureStore(folder, definitions=[view], clock=lambda: to_micros(NOW))


def _order(event_id: str, hour: int, qty: int) -> dict[str, object]:
    return {
        "event_id": event_id,
        "ts": f"2026-06-01T{hour:02d}:00:00Z",
        "customer_id": "c1",
        "qty": qty,
    }


def _values(store: FeatureStore) -> list[object]:
    response = store.get_online_features(REFS, [{"customer_id": "c1"}], now=NOW)
    return [response.values[ref][0] for ref in REFS]


def test_each_store_sees_the_others_ingests_and_backfills(tmp_path: Path) -> None:
    a = _store(tmp_path)
    a.apply()
    b = _store(tmp_path)
    a.ingest("orders", [_order("e1", 9, 2)])
    assert _values(a) == [2, 2]
    assert _values(b) == [2, 2]
    b.ingest("orders", [_order("e2", 10, 3)])
    assert _values(a) == [5, 3]
    a.ingest("orders", [_order("e3", 11, 4)])  # folds into b's state, not its own old copy
    assert _values(b) == [9, 4]
    assert _values(a) == [9, 4]
    b.materialize(start=datetime(2026, 6, 1, 10, 30, tzinfo=UTC))  # only e3 from then on
    assert _values(a) == [4, 4]
    a.close()
    b.close()
