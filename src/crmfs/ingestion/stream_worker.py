"""A stream worker: consumes its partitions of the event bus and runs the pipeline on them.

One round: fetch messages (those a crash or a dead worker left first, see
``redis_stream_consumer``), decode and validate them (in parallel with other workers),
then, holding the project's ``CommitLock``: catch up on anything committed but not applied
(a worker killed mid-commit), resolve identity, append to the event log, apply online and
follow identity changes; release the lock; acknowledge the messages. Effectively exactly
once, whatever the point a worker is killed at:

- before the log append: nothing durable happened; the messages are delivered again;
- after the identity graph's commit, before the log's: the records are known, a
  redelivery adds nothing to the graph and gets the same golden ids (the identity
  partition appends each message right after its identity step);
- after the log append, before the online write: the redelivered events are duplicates
  (``(source, event_id)`` is unique) and the next commit's catch-up applies the log;
- after the online write, before the acknowledgement: all duplicates, nothing changes.

A message that fails for reasons of its own (not an outage: ``StorageError`` and ``OSError``
are waited out and retried) is retried alone; delivered ``max_deliveries`` times (counting
deliveries to workers that died processing it) it goes to the dead-letter stream with the
reason. Undecodable messages and unknown sources go there at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from crmfs.errors import IngestError, StorageError
from crmfs.identity.graph import IdentityGraph
from crmfs.ingestion.bus import decode_events
from crmfs.ingestion.keying import MappedKeys
from crmfs.ingestion.pipeline import Checked, IngestionPipeline, IngestReport
from crmfs.storage.bus import IDENTITY_PARTITION, BusConsumer, Delivery

_log = logging.getLogger(__name__)
# Outages of Redis, the disk or SQLite: the batch is retried after a pause, never dead-lettered.
OUTAGES = (StorageError, OSError)


@dataclass(frozen=True)
class WorkerOptions:
    """``max_messages`` per fetch, ``block_ms`` waiting for new ones, ``rebalance_every_s``
    between looks at the other workers, ``report_every_s`` between progress lines,
    ``outage_pause_s`` before a batch that met an outage is tried again."""

    max_messages: int = 64
    block_ms: int = 500
    rebalance_every_s: float = 1.0
    report_every_s: float = 10.0
    outage_pause_s: float = 1.0


@dataclass
class WorkerStats:
    """What a worker did since it started."""

    started: float = field(default_factory=time.monotonic)
    messages: int = 0
    records: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    dead_letters: int = 0
    retries: int = 0
    outages: int = 0

    def add(self, report: IngestReport) -> None:
        self.records += report.received
        self.accepted += report.accepted
        self.duplicates += report.duplicates
        self.quarantined += report.quarantined


class Consumer(BusConsumer, Protocol):
    max_deliveries: int

    def noted_error(self, delivery: Delivery) -> str | None: ...


Item = tuple[Delivery, pa.Table]


class StreamWorker:
    """Runs ``pipeline`` on the messages ``consumer`` hands out, under ``lock``."""

    def __init__(
        self,
        pipeline: IngestionPipeline,
        keys: MappedKeys,
        graph: IdentityGraph,
        consumer: Consumer,
        lock: AbstractContextManager[Any],
        options: WorkerOptions | None = None,
        report: Callable[[str], None] | None = None,
        backlog: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.keys = keys
        self.graph = graph
        self.consumer = consumer
        self.lock = lock
        self.options = options or WorkerOptions()
        self.stats = WorkerStats()
        self._report = report
        self._backlog = backlog
        self._seen_seq: int | None = None  # the log's last seq after this worker's commit

    # -- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> WorkerStats:
        """Work until ``stop`` is set (then finish the batch in hand, let go of the
        partitions and return)."""
        self.consumer.start()
        options = self.options
        next_rebalance = next_report = time.monotonic()
        reported = (self.stats.records, time.monotonic())
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_rebalance:
                    self._rebalance()
                    next_rebalance = now + options.rebalance_every_s
                if self._report is not None and now >= next_report:
                    reported = self._progress(reported)
                    next_report = now + options.report_every_s
                try:
                    deliveries = self.consumer.fetch(options.max_messages, options.block_ms)
                except OUTAGES as exc:
                    self._outage(exc, stop)
                    continue
                if deliveries:
                    self.handle(deliveries, stop)
        finally:
            self.consumer.close()
            if self._report is not None:
                self._progress(reported, final=True)
        return self.stats

    def _rebalance(self) -> None:
        had_identity = self.consumer.owns(IDENTITY_PARTITION)
        try:
            owned = self.consumer.rebalance()
        except OUTAGES as exc:
            _log.warning("%s: rebalance failed: %s", self.consumer.name, exc)
            return
        if not had_identity and IDENTITY_PARTITION in owned:
            try:  # a dead owner may have left identity changes unfollowed
                self._commit([])
            except OUTAGES as exc:
                _log.warning("%s: catch-up failed: %s", self.consumer.name, exc)

    def _outage(self, exc: BaseException, stop: threading.Event) -> None:
        self.stats.outages += 1
        _log.warning(
            "%s: %s; trying again in %s s", self.consumer.name, exc, self.options.outage_pause_s
        )
        stop.wait(self.options.outage_pause_s)

    # -- a batch -----------------------------------------------------------------------

    def handle(self, deliveries: Sequence[Delivery], stop: threading.Event) -> None:
        """Process and acknowledge a fetched batch (or dead-letter what cannot be)."""
        items = [item for d in deliveries if (item := self._decoded(d)) is not None]
        while items:
            try:
                self._commit(items)
            except OUTAGES as exc:
                if stop.is_set():
                    return  # left pending: delivered again to this partition's next owner
                self._outage(exc, stop)
                continue
            except Exception:
                if len(items) > 1:
                    for item in items:  # find the message that fails, let the others through
                        self._alone(item, stop)
                    return
                self._alone(items[0], stop)
                return
            self._acknowledge([d for d, _ in items])
            return

    def _decoded(self, delivery: Delivery) -> Item | None:
        """The message's events; None if it went to the dead letters (delivered too often,
        undecodable, unknown source)."""
        limit = self.consumer.max_deliveries
        if delivery.deliveries > limit:
            noted = self.consumer.noted_error(delivery)
            why = (
                f"last error: {noted}"
                if noted
                else "the workers processing it stopped each time (killed or crashed)"
            )
            self._dead(
                delivery, f"delivered {delivery.deliveries} times, never acknowledged; {why}"
            )
            return None
        try:
            self.pipeline.source(delivery.source)
            return delivery, decode_events(delivery.payload)
        except IngestError as exc:
            self._dead(delivery, str(exc))
            return None

    def _alone(self, item: Item, stop: threading.Event) -> None:
        """Process one message until it is acknowledged or dead-lettered."""
        delivery, table = item
        while not stop.is_set():
            try:
                self._commit([(delivery, table)])
            except OUTAGES as exc:
                self._outage(exc, stop)
                continue
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                _log.warning(
                    "%s: message %s/%s failed (delivery %d): %s",
                    self.consumer.name,
                    delivery.partition,
                    delivery.entry_id,
                    delivery.deliveries,
                    reason,
                )
                if delivery.deliveries >= self.consumer.max_deliveries:
                    self._dead(
                        delivery, f"failed {delivery.deliveries} times; last error: {reason}"
                    )
                    return
                again = self.consumer.retry(delivery, reason)
                if again is None:
                    return  # another worker took it over
                self.stats.retries += 1
                delivery = again
                continue
            self._acknowledge([delivery])
            return

    def _dead(self, delivery: Delivery, reason: str) -> None:
        if self.consumer.dead_letter(delivery, reason):
            self.stats.dead_letters += 1
            _log.warning(
                "%s: message %s/%s (%s) dead-lettered: %s",
                self.consumer.name,
                delivery.partition,
                delivery.entry_id,
                delivery.source,
                reason,
            )

    def _acknowledge(self, deliveries: list[Delivery]) -> None:
        while True:
            try:
                self.consumer.ack(deliveries)
                break
            except OUTAGES as exc:  # committed: only the acknowledgement is missing
                self._outage(exc, threading.Event())
        self.stats.messages += len(deliveries)

    def _commit(self, items: Sequence[Item]) -> list[IngestReport]:
        """Check ``items`` (no lock), then commit them holding the lock."""
        at = self.pipeline.clock()
        groups = _groups([(d, self.pipeline.check(d.source, t, at)) for d, t in items])
        identity = any(d.partition == IDENTITY_PARTITION for d, _ in items)
        reports = []
        with self.lock:
            owner = identity or self.consumer.owns(IDENTITY_PARTITION)
            self._refresh(owner)
            self.pipeline.processor.catch_up(self.pipeline.log)
            if owner:
                self.keys.follow()
            for parts, from_identity in groups:
                report = self.pipeline.commit(parts, at, follow=False)
                if from_identity:
                    self.keys.follow(parts[0].source.name)
                reports.append(report)
            self._seen_seq = self.pipeline.log.max_seq()
        for report in reports:
            self.stats.add(report)
        return reports

    def _refresh(self, owner: bool) -> None:
        """Forget what other processes changed since this worker's last commit: the graph
        (if this worker resolves identities) and cached relation snapshots."""
        changed = self._seen_seq is not None and self.pipeline.log.max_seq() != self._seen_seq
        if owner and self.graph.refresh():
            changed = True
        if changed:
            self.keys.forget_cached()

    # -- progress ----------------------------------------------------------------------

    def _progress(self, before: tuple[int, float], final: bool = False) -> tuple[int, float]:
        assert self._report is not None
        stats, now = self.stats, time.monotonic()
        rate = (stats.records - before[0]) / max(now - before[1], 1e-9)
        backlog = ""
        if self._backlog is not None and not final:
            try:
                backlog = f" | backlog {sum(self._backlog().values()):,} messages"
            except OUTAGES:
                backlog = " | backlog unknown"
        owned = ",".join(sorted(self.consumer.owned(), key=_partition_order)) or "none"
        self._report(
            f"worker {self.consumer.name}{' stopped' if final else ''}: partitions {owned}"
            f" | records {stats.records:,} ({rate:,.0f}/s) | accepted {stats.accepted:,}"
            f" | duplicates {stats.duplicates:,} | quarantined {stats.quarantined:,}"
            f" | dead letters {stats.dead_letters:,} | messages {stats.messages:,}{backlog}"
        )
        return stats.records, now


def _partition_order(name: str) -> tuple[int, int]:
    return (0, 0) if name == IDENTITY_PARTITION else (1, int(name))


def _groups(checked: list[tuple[Delivery, Checked]]) -> list[tuple[list[Checked], bool]]:
    """Commit groups in order: per source, the entity partitions' messages together; the
    identity partition's in runs of one source, in their order (it is ordered as published).
    Each group with whether it comes from the identity partition."""
    by_source: dict[str, list[Checked]] = {}
    runs: list[tuple[list[Checked], bool]] = []
    for delivery, part in checked:
        if delivery.partition != IDENTITY_PARTITION:
            by_source.setdefault(part.source.name, []).append(part)
        elif runs and runs[-1][0][0].source.name == part.source.name:
            runs[-1][0].append(part)
        else:
            runs.append(([part], True))
    return [(parts, False) for parts in by_source.values()] + runs
