"""Schema validation: each bad record quarantined with its field and problem, nothing lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from crmfs.storage.event_log import EVENT_TIME
from crmfs.store import FeatureStore
from crmfs.timestamps import from_micros
from tests.orders_project import NOW, orders_store


def _store(folder: Path, timezone: str | None = None) -> FeatureStore:
    return orders_store(folder, timezone)


def test_each_bad_record_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    store = _store(tmp_path)
    good = {
        "event_id": "ok",
        "ts": "2026-06-01T10:00:00Z",
        "customer_id": "c1",
        "qty": "12",
        "price": 2.5,
    }
    records = [
        good,
        {**good, "event_id": "naive", "ts": "2026-06-01T10:00:00"},
        {**good, "event_id": "future", "ts": "2026-06-02T10:00:00Z"},
        {**good, "event_id": "fraction", "qty": 1.5},
        {**good, "event_id": "text", "qty": "abc"},
        {**good, "event_id": "nan", "price": float("nan")},
        {**good, "event_id": "nokey", "customer_id": None},
        {**good, "event_id": None},
        {**good, "event_id": "whole", "qty": 3.0, "extra": "ignored"},
        good,
    ]
    report = store.ingest("orders", records)
    assert report.received == 10
    assert (report.accepted, report.duplicates, report.quarantined) == (2, 1, 7)
    reasons = {r.record["event_id"]: (r.field, r.reason) for r in store.quarantine()}
    assert reasons["naive"][0] == "ts"
    assert "naive" in reasons["naive"][1]
    assert "future" in reasons["future"][1]
    assert reasons["fraction"][0] == "qty"
    assert reasons["text"][0] == "qty"
    assert reasons["nan"][0] == "price"
    assert reasons["nokey"][0] == "customer_id"
    assert reasons[None][0] == "event_id"
    online = store.get_online_features(["orders_view:qty_30d"], [{"customer_id": "c1"}], now=NOW)
    assert online.values["orders_view:qty_30d"] == [15]  # 12 + 3, each counted once


def test_naive_timestamps_use_the_source_timezone(tmp_path: Path) -> None:
    store = _store(tmp_path, timezone="Europe/Paris")
    store.ingest(
        "orders",
        [{"event_id": "a", "ts": "2026-06-01T12:00:00", "customer_id": "c1", "price": 1.0}],
    )
    online = store.get_online_features(["orders_view:price"], [{"customer_id": "c1"}], now=NOW)
    assert online.ages["orders_view:price"] == [7200.0]  # 12:00 in Paris (summer) is 10:00 UTC


def test_pandas_and_arrow_inputs_and_idempotency(tmp_path: Path) -> None:
    store = _store(tmp_path)
    frame = pd.DataFrame(
        {
            "event_id": ["a", "b"],
            "ts": [datetime(2026, 6, 1, 9, tzinfo=UTC)] * 2,
            "customer_id": ["c1", "c1"],
            "qty": [1, 2],
            "price": [1.0, 2.0],
        }
    )
    assert store.ingest("orders", frame).accepted == 2
    import pyarrow as pa

    again = store.ingest("orders", pa.Table.from_pandas(frame))
    assert (again.accepted, again.duplicates) == (0, 2)
    online = store.get_online_features(["orders_view:qty_30d"], [{"customer_id": "c1"}], now=NOW)
    assert online.values["orders_view:qty_30d"] == [3]


PARIS_SUMMER = timezone(timedelta(hours=2))


def _event_times(store: FeatureStore) -> dict[str, datetime]:
    table = store.log.read("orders")
    assert table is not None
    return {
        e: from_micros(t)
        for e, t in zip(
            table.column("event_id").to_pylist(), table.column(EVENT_TIME).to_pylist(), strict=True
        )
    }


@pytest.mark.parametrize("aware_first", [True, False])
def test_mixed_naive_and_aware_datetimes_take_the_source_timezone(
    tmp_path: Path, aware_first: bool
) -> None:
    store = _store(tmp_path, timezone="Europe/Paris")
    records = [
        {"event_id": "aware", "ts": datetime(2026, 6, 1, 10, tzinfo=PARIS_SUMMER)},
        {"event_id": "naive", "ts": datetime(2026, 6, 1, 11)},  # Paris local time
        {"event_id": "utc", "ts": datetime(2026, 6, 1, 9, 30, tzinfo=UTC)},
        {"event_id": "missing", "ts": None},
    ]
    if not aware_first:
        records.reverse()
    report = store.ingest("orders", [{**r, "customer_id": "c1"} for r in records])
    assert (report.accepted, report.quarantined) == (3, 1)
    assert _event_times(store) == {
        "aware": datetime(2026, 6, 1, 8, tzinfo=UTC),
        "naive": datetime(2026, 6, 1, 9, tzinfo=UTC),
        "utc": datetime(2026, 6, 1, 9, 30, tzinfo=UTC),
    }
    [missing] = store.quarantine()
    assert missing.reason == "ts: is required but missing"


@pytest.mark.parametrize("aware_first", [True, False])
def test_mixed_datetimes_without_a_source_timezone_reject_only_the_naive(
    tmp_path: Path, aware_first: bool
) -> None:
    records = [
        {"event_id": "aware", "ts": datetime(2026, 6, 1, 10, tzinfo=PARIS_SUMMER)},
        {"event_id": "naive", "ts": datetime(2026, 6, 1, 11)},
    ]
    if not aware_first:
        records.reverse()
    rows = [{**r, "customer_id": "c1"} for r in records]
    for name, batch in (("dicts", rows), ("pandas", pd.DataFrame(rows, dtype=object))):
        store = _store(tmp_path / name)
        store.ingest("orders", batch)
        assert _event_times(store) == {"aware": datetime(2026, 6, 1, 8, tzinfo=UTC)}, name
        [naive] = store.quarantine()
        assert naive.record["event_id"] == "naive"
        assert naive.field == "ts"
        assert "is naive (no timezone) and the source declares no timezone" in naive.reason
