"""Events published to the Redis Streams bus and processed by two worker processes leave
exactly what the direct path (``FeatureStore.ingest``) leaves: the event log (but its seqs),
the quarantine, every table of the identity graph, the marks, every online value."""

from __future__ import annotations

from pathlib import Path

from crmfs.ingestion.bus import EmbeddedBus
from crmfs.storage.redis_streams import RedisStreamBus
from tests.orders_project import NOW, orders_store
from tests.workers.crm_project import batches, snapshot
from tests.workers.harness import Workers, publish, wait_drained
from tests.workers.reference import MESSAGE_ROWS, direct_snapshot


def test_two_workers_leave_what_the_direct_path_leaves(
    project: Path, transport: RedisStreamBus, workers: Workers
) -> None:
    messages = publish(project, batches(), MESSAGE_ROWS)
    assert messages > 50
    workers.start("w1")
    workers.start("w2")
    wait_drained(transport, workers, restart=False)
    assert workers.stop_all() == {"w1": 0, "w2": 0}
    found = snapshot(project)
    expected = direct_snapshot()
    assert found["log"].keys() == expected["log"].keys()
    for part in ("quarantine", "graph", "marks", "log", "online"):
        assert found[part] == expected[part], part
    assert transport.dead_letters() == []
    assert not any(transport.pending()[p] for p in transport.names)


def test_the_embedded_bus_is_the_direct_path(tmp_path: Path) -> None:
    store = orders_store(tmp_path)
    records = [
        {"event_id": f"o{i}", "ts": NOW, "customer_id": "c1", "qty": 2, "price": 9.5}
        for i in range(3)
    ]
    published = EmbeddedBus(store.ingest).publish("orders", [*records, records[0]])
    assert (published.records, published.messages) == (4, 0)
    assert published.report is not None
    assert (published.report.accepted, published.report.duplicates) == (3, 1)
    online = store.get_online_features(["orders_view:qty_30d"], [{"customer_id": "c1"}])
    assert online.to_dict()["orders_view:qty_30d"] == [6]
    store.close()
