"""Back-pressure: a partition holding ``max_backlog`` messages stops publishers, who wait
(``block``) or get ``BusFull`` naming the partition at once; a publish is all or nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from crmfs.cli.worker_cmd import open_stream_bus
from crmfs.errors import BusFull
from crmfs.ingestion.bus_routes import entity_partition
from crmfs.storage.redis_streams import RedisStreamBus
from crmfs.store import FeatureStore
from tests.workers.crm_project import NOW, NOW_US
from tests.workers.harness import PARTITIONS, Workers, bus_settings, wait_drained


def _orders(customer: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{customer}-{n}",
            "ts": NOW.isoformat(),
            "customer_id": customer,
            "qty": 1,
            "price": 1.0,
        }
        for n in range(start, start + count)
    ]


def _two_customers_of_other_partitions() -> tuple[str, str]:
    first = "c0"
    other = next(
        f"c{n}"
        for n in range(1, 100)
        if entity_partition(f"c{n}", PARTITIONS) != entity_partition(first, PARTITIONS)
    )
    return first, other


def test_a_full_partition_refuses_a_publish_at_once_and_writes_none_of_it(
    project: Path, transport: RedisStreamBus
) -> None:
    store = FeatureStore(project, clock=lambda: NOW_US)
    bus, publisher = open_stream_bus(
        store, bus_settings(max_backlog=3, block=False), message_rows=10
    )
    try:
        full, other = _two_customers_of_other_partitions()
        bus.publish("orders", _orders(full, 30))  # 3 messages: the bound, reached
        before = transport.backlog()
        with pytest.raises(BusFull) as refused:
            bus.publish("orders", _orders(other, 5) + _orders(full, 5, start=30))
        assert refused.value.partition == str(entity_partition(full, PARTITIONS))
        assert (refused.value.length, refused.value.bound) == (3, 3)
        assert "stream workers are behind" in str(refused.value)
        assert transport.backlog() == before  # not even the other partition's message
    finally:
        publisher.close()
        store.close()


def test_a_blocking_publisher_waits_for_the_workers_then_publishes(
    project: Path, transport: RedisStreamBus, workers: Workers
) -> None:
    store = FeatureStore(project, clock=lambda: NOW_US)
    settings = bus_settings(max_backlog=2, block=True, publish_timeout_s=0.3)
    bus, publisher = open_stream_bus(store, settings, message_rows=10)
    try:
        bus.publish("orders", _orders("c0", 20))
        started = time.monotonic()
        with pytest.raises(BusFull) as timed_out:  # no worker: it waits, then gives up
            bus.publish("orders", _orders("c0", 1, start=20))
        assert timed_out.value.waited_s >= 0.3
        assert time.monotonic() - started >= 0.3

        patient, patient_publisher = open_stream_bus(
            store, bus_settings(max_backlog=2, block=True, publish_timeout_s=30), message_rows=10
        )
        done = threading.Event()
        waited: list[float] = []

        def publish_later() -> None:
            begun = time.monotonic()
            patient.publish("orders", _orders("c0", 10, start=20))
            waited.append(time.monotonic() - begun)
            done.set()

        thread = threading.Thread(target=publish_later)
        thread.start()
        time.sleep(0.3)
        assert not done.is_set()  # still waiting: nobody consumes
        workers.start("w1")
        thread.join(30)
        patient_publisher.close()
        assert done.is_set()
        assert waited[0] >= 0.3
        wait_drained(transport, workers)
        assert workers.stop_all() == {"w1": 0}
        assert store.log.counts() == {"orders": 30}
    finally:
        publisher.close()
        store.close()
