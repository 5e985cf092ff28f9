"""Routing events to partitions, and dealing partitions out to workers (real Redis)."""

from __future__ import annotations

import zlib
from pathlib import Path

import pyarrow as pa

from crmfs.definitions import Catalog
from crmfs.ingestion.bus import decode_events, encode_events
from crmfs.ingestion.bus_routes import Route, entity_partition, routes, split_by_partition
from crmfs.storage.bus import IDENTITY_PARTITION, partition_names
from crmfs.storage.redis_stream_consumer import RedisStreamConsumer
from crmfs.storage.redis_streams import RedisStreamBus
from tests.workers.crm_project import VIEWS
from tests.workers.harness import PARTITIONS


def test_identity_sources_go_to_the_identity_partition_others_by_their_view_key() -> None:
    found = routes(Catalog.of(VIEWS.values()))
    assert found == {
        "orders": Route("orders", "customer_id"),
        "contacts": Route("contacts", None),
        "touches": Route("touches", None),
    }


def test_a_key_goes_to_the_same_partition_in_every_process_and_type() -> None:
    assert entity_partition("c1", 8) == zlib.crc32(b"c1") % 8 == 1
    assert entity_partition(42, 8) == entity_partition("42", 8)
    table = pa.table({"customer_id": ["c1", None, "c2", "c1", "c3"], "n": [1, 2, 3, 4, 5]})
    parts = split_by_partition(table, Route("orders", "customer_id"), 8)
    assert sum(t.num_rows for t in parts.values()) == 5
    for name, part in parts.items():
        keys = part["customer_id"].to_pylist()
        assert all(entity_partition(k, 8) == int(name) for k in keys)
        assert part["n"].to_pylist() == sorted(part["n"].to_pylist())  # order kept
    assert split_by_partition(table, Route("contacts", None), 8) == {IDENTITY_PARTITION: table}


def test_a_message_decodes_to_the_table_it_was_made_of() -> None:
    table = pa.table({"event_id": ["e1", "e2"], "qty": ["1", "bad"]})
    assert decode_events(encode_events(table)).equals(table)


def test_live_workers_share_the_partitions_and_a_leaving_one_hands_its_share_over(
    project: Path, transport: RedisStreamBus
) -> None:
    first = RedisStreamConsumer(transport, "a")
    second = RedisStreamConsumer(transport, "b")
    first.start()
    assert first.rebalance() == set(partition_names(PARTITIONS))  # alone: everything
    second.start()
    second.rebalance()  # b's share is still a's: leases are let go before they are taken
    first.rebalance()
    a, b = first.owned(), second.rebalance()
    assert a
    assert b
    assert not a & b
    assert a | b == set(partition_names(PARTITIONS))
    first.close()  # lets go of its leases at once
    assert second.rebalance() == set(partition_names(PARTITIONS))
    second.close()
