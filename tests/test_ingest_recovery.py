"""An ingest whose online write fails after the log commit is repaired by the next ingest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crmfs.errors import StorageError
from tests.orders_project import NOW, orders_store


def test_a_retry_after_a_failed_online_write_brings_the_online_store_up_to_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = orders_store(tmp_path)
    records = [
        {"event_id": f"o{i}", "ts": NOW, "customer_id": "c1", "qty": 2, "price": 9.5}
        for i in range(3)
    ]
    real_write = store.online.write

    def failing_write(*args: Any, **kwargs: Any) -> None:
        raise StorageError("online store unavailable")

    monkeypatch.setattr(store.online, "write", failing_write)
    with pytest.raises(StorageError):
        store.ingest("orders", records)  # committed to the log, not applied online
    monkeypatch.setattr(store.online, "write", real_write)

    report = store.ingest("orders", records)  # the retry: every record is a duplicate ...
    assert report.duplicates == 3
    online = store.get_online_features(["orders_view:qty_30d"], [{"customer_id": "c1"}])
    assert online.to_dict()["orders_view:qty_30d"] == [6]  # ... and the events are online
    store.close()
