"""The event bus: how raw events reach the pipeline, directly or through stream workers.

``EventBus.publish(source, records)`` takes the same records as ``FeatureStore.ingest``.

- ``EmbeddedBus`` is today's direct path: the records go through the pipeline at once
  (validate, identity, event log, online store) and the call returns its ``IngestReport``.
- ``StreamBus`` writes them to a partitioned transport (Redis Streams): the records become
  an Arrow table, split by partition (``bus_routes``) into messages of at most
  ``message_rows`` events each, encoded as Arrow IPC streams. Stream workers
  (``stream_worker``) decode each message into the very table ``ingest`` would have built
  and run the pipeline on it; so validation, the quarantine and identity behave as in a
  direct ingest of that message.

>>> bus = StreamBus(store.catalog, RedisStreamBus(RedisSettings(), "shop", StreamSettings()))
>>> bus.publish("clicks", [{"event_id": "e1", "ts": "2026-11-20T10:00:00Z", "customer_id": "c1"}])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from crmfs.definitions import Catalog
from crmfs.errors import IngestError
from crmfs.ingestion.bus_routes import Route, routes, split_by_partition
from crmfs.ingestion.pipeline import IngestReport
from crmfs.ingestion.readers import Records, to_table
from crmfs.storage.bus import BusProducer, OutgoingMessage

DEFAULT_MESSAGE_ROWS = 1_000


@dataclass(frozen=True)
class Published:
    """What a publish did: ``records`` handed over in ``messages`` bus messages; with the
    embedded bus (no messages), the ``report`` of the ingest that already ran."""

    source: str
    records: int
    messages: int
    report: IngestReport | None = None


class EventBus(Protocol):
    def publish(self, source: str, records: Records) -> Published:
        """Hand raw records of ``source`` over for ingestion (durable once it returns)."""
        ...


class EmbeddedBus:
    """The direct path: a publish is an ingest (``FeatureStore.ingest``)."""

    def __init__(self, ingest: Callable[[str, Records], IngestReport]) -> None:
        self._ingest = ingest

    def publish(self, source: str, records: Records) -> Published:
        report = self._ingest(source, records)
        return Published(source, report.received, 0, report)


class StreamBus:
    """Publishes records as partitioned messages for stream workers."""

    def __init__(
        self, catalog: Catalog, producer: BusProducer, message_rows: int = DEFAULT_MESSAGE_ROWS
    ) -> None:
        if message_rows < 1:
            raise ValueError("message_rows must be at least 1")
        self.producer = producer
        self.message_rows = message_rows
        self._routes = routes(catalog)

    def route(self, source: str) -> Route:
        found = self._routes.get(source)
        if found is None:
            known = ", ".join(sorted(self._routes)) or "none defined"
            raise IngestError(f"unknown source {source!r}; sources: {known}")
        return found

    def publish(self, source: str, records: Records) -> Published:
        """Publish ``records`` of ``source``: durable in the bus once this returns (raises
        ``BusFull`` when a partition is over its backlog bound)."""
        route = self.route(source)
        table = to_table(records)
        messages = [
            OutgoingMessage(partition, source, chunk.num_rows, encode_events(chunk))
            for partition, rows in split_by_partition(
                table, route, self.producer.partitions
            ).items()
            for chunk in _chunks(rows, self.message_rows)
        ]
        if messages:
            self.producer.publish(messages)
        return Published(source, table.num_rows, len(messages))


def _chunks(table: pa.Table, rows: int) -> list[pa.Table]:
    return [table.slice(start, rows) for start in range(0, table.num_rows, rows)]


def encode_events(table: pa.Table) -> bytes:
    """A message's payload: the events as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def decode_events(payload: bytes) -> pa.Table:
    """The events of a message (raises ``IngestError`` if the payload is not one)."""
    try:
        return pa.ipc.open_stream(payload).read_all()
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise IngestError(f"not an Arrow IPC stream of events: {exc}") from exc
