"""A live worker takes over what a killed one left; messages that cannot be processed go to
the dead-letter stream with the reason, and can be requeued once fixed."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from crmfs.storage.bus import partition_names
from crmfs.storage.redis_streams import RedisStreamBus
from crmfs.store import FeatureStore
from tests.storage.redis_servers import SHARED_URL
from tests.workers.crm_project import NOW, NOW_US, batches, snapshot
from tests.workers.harness import PARTITIONS, Workers, publish, wait_drained
from tests.workers.reference import MESSAGE_ROWS, direct_snapshot


def _held_by(transport: RedisStreamBus, name: str) -> int:
    return sum(transport.pending()[p].get(name, 0) for p in partition_names(PARTITIONS))


def test_a_live_worker_claims_the_messages_a_killed_worker_left(
    project: Path, transport: RedisStreamBus, workers: Workers
) -> None:
    publish(project, batches(), MESSAGE_ROWS)
    dying = workers.start("w1", "--crash", "fetched:2")  # dies holding what it fetched
    workers.start("w2")
    deadline = time.monotonic() + 30
    while dying.poll() is None:
        assert time.monotonic() < deadline, workers.output()
        time.sleep(0.01)
    assert _held_by(transport, "w1") > 0  # unacknowledged, pending for the dead worker
    wait_drained(transport, workers, restart=False)  # w2 alone finishes
    assert _held_by(transport, "w1") == 0
    assert workers.reap() == ["w1"]
    assert workers.stop_all() == {"w2": 0}
    found, expected = snapshot(project), direct_snapshot()
    for part in ("marks", "quarantine", "graph", "log", "online"):
        assert found[part] == expected[part], part


def _order(event_id: str) -> dict[str, object]:
    return {
        "event_id": event_id,
        "ts": NOW.isoformat(),
        "customer_id": "c7",
        "qty": 1,
        "price": 2.0,
    }


def test_poison_messages_go_to_the_dead_letters_with_the_reason_and_can_be_requeued(
    project: Path, prefix: str, transport: RedisStreamBus, workers: Workers
) -> None:
    good = [_order(f"g{n}") for n in range(30)]
    publish(project, [("orders", good[:10])])
    publish(project, [("orders", [_order("poison-raise")])])  # validation raises
    publish(project, [("orders", [_order("poison-crash")])])  # kills the worker, each time
    publish(project, [("orders", good[10:20])])
    stream = transport.keys.stream("0")
    client = redis.Redis.from_url(SHARED_URL)
    try:
        client.xadd(stream, {"source": "orders", "rows": 1, "data": b"not arrow"})
        client.xadd(stream, {"source": "nope", "rows": 1, "data": b"x"})
    finally:
        client.close()
    publish(project, [("orders", good[20:])])
    workers.start("w1", "--max-deliveries", "3")
    wait_drained(transport, workers, timeout_s=60)  # started again after each poison kill

    letters = {letter["id"]: letter for letter in transport.dead_letters()}
    reasons = sorted(letter["reason"] for letter in letters.values())
    assert len(reasons) == 4, reasons
    assert any(r.startswith("not an Arrow IPC stream of events") for r in reasons), reasons
    assert any(r.startswith("unknown source 'nope'") for r in reasons), reasons
    assert "failed 3 times; last error: ValueError: poisoned record" in reasons
    assert (
        "delivered 4 times, never acknowledged; the workers processing it stopped each time"
        " (killed or crashed)" in reasons
    )
    store = FeatureStore(project, clock=lambda: NOW_US)
    try:
        assert store.log.counts() == {"orders": 30}  # every good message went through
    finally:
        store.close()

    # Fixed (a worker without the poison), the raising message is requeued and processed.
    raised = next(d for d, v in letters.items() if v["reason"].startswith("failed"))
    dead_id = next(v["dead_id"] for v in letters.values() if v["id"] == raised)
    assert workers.stop_all() == {"w1": 0}
    assert transport.requeue_dead_letters([dead_id]) == 1
    workers.start("w1", "--cured")
    wait_drained(transport, workers)
    assert workers.stop_all() == {"w1": 0}
    assert len(transport.dead_letters()) == 3
    assert snapshot(project)["log"]["orders"][-1]["event_id"] == "poison-raise"
