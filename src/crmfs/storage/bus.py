"""The event bus transport port: messages of events in partitions, consumed with acks.

A *message* is one batch of raw events of one source, encoded by the ingestion layer
(``crmfs.ingestion.bus``); the transport only moves its bytes. Messages go to named
*partitions*: ``identity`` for sources resolved by the identity graph, ``0`` ... ``N-1`` for
the others (by a stable hash of the entity key). A consumer owns some partitions at a time,
reads their messages in order and acknowledges each one once its effect is durable; a message
not acknowledged is delivered again (after a crash, to the partition's next owner).

The Redis Streams adapter is ``crmfs.storage.redis_streams``; a Kafka one would fit the same
protocols (partitions, consumer groups, offsets committed after the write).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

IDENTITY_PARTITION = "identity"


def partition_names(partitions: int) -> list[str]:
    """Every partition of a bus with ``partitions`` entity partitions, identity first."""
    return [IDENTITY_PARTITION, *(str(i) for i in range(partitions))]


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to publish: ``rows`` events of ``source``, encoded in ``payload``."""

    partition: str
    source: str
    rows: int
    payload: bytes


@dataclass(frozen=True)
class Delivery:
    """A message as a consumer received it; ``deliveries`` counts the times it was handed
    out (1 the first time; more after failures, crashes and takeovers)."""

    partition: str
    entry_id: str
    source: str
    rows: int
    payload: bytes
    deliveries: int


class BusProducer(Protocol):
    partitions: int

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Append the messages (each to its partition, in order); their ids. Raises
        ``BusFull`` if a partition is over its backlog bound (waiting first, if set to)."""
        ...


class BusConsumer(Protocol):
    """One worker's side of the bus: the partitions it owns and their messages."""

    name: str

    def start(self) -> None:
        """Join the workers (ownership of partitions follows with ``rebalance``)."""
        ...

    def rebalance(self) -> set[str]:
        """Take this worker's share of the partitions and let go of the others (between
        batches); the partitions owned now."""
        ...

    def owned(self) -> set[str]: ...

    def owns(self, partition: str) -> bool: ...

    def fetch(self, max_messages: int, block_ms: int) -> list[Delivery]:
        """Messages of owned partitions, in partition order: first those a dead owner or
        a crash left unacknowledged, then new ones (waiting up to ``block_ms``)."""
        ...

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """The messages' effects are durable: they are never delivered again."""
        ...

    def retry(self, delivery: Delivery, error: str) -> Delivery | None:
        """Deliver a message that failed again, to this worker (its delivery count grows);
        None if it is no longer pending here (another worker took it)."""
        ...

    def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        """Move a message that cannot be processed to the dead-letter stream with the
        reason, acknowledged in the same step; False if it was no longer pending."""
        ...

    def close(self) -> None:
        """Let go of the partitions (others take them at once) and leave the workers."""
        ...
