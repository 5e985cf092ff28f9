"""A direct ingest and an operator's identity change take the project's commit lock, as
stream workers do for their commits: neither interleaves with a worker's."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from crmfs.ingestion.commit_lock import LOCK_FILE, CommitLock
from tests.orders_project import NOW, orders_store


def test_an_ingest_waits_for_a_commit_another_holder_has_in_progress(tmp_path: Path) -> None:
    store = orders_store(tmp_path)
    worker = CommitLock(store.log.root / LOCK_FILE)  # another open file: as another process
    worker.acquire()
    done: list[float] = []

    def ingest() -> None:
        store.ingest(
            "orders",
            [{"event_id": "e1", "ts": "2026-06-01T10:00:00Z", "customer_id": "c1", "qty": 1}],
        )
        done.append(time.monotonic())

    thread = threading.Thread(target=ingest)
    thread.start()
    time.sleep(0.3)
    assert not done  # still waiting for the lock
    released = time.monotonic()
    worker.release()
    thread.join(timeout=30)
    assert done
    assert done[0] >= released
    # Re-entrant in one thread: an ingest's catch-up follows identity under the same hold.
    store.ingest(
        "orders",
        [{"event_id": "e2", "ts": "2026-06-01T11:00:00Z", "customer_id": "c1", "qty": 2}],
    )
    response = store.get_online_features(["orders_view:qty_30d"], [{"customer_id": "c1"}], now=NOW)
    assert response.values["orders_view:qty_30d"] == [3]
    worker.close()
    store.close()
