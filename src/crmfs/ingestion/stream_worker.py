"""A stream worker: consumes its partitions of the event bus and runs the pipeline on them.

One round: fetch messages (those a crash or a dead worker left first, see
``redis_stream_consumer``), decode and validate them (in parallel with other workers),
commit them (``worker_commit``: identity, log append, online write in log order, followers;
the project's ``CommitLock`` held for the append, or throughout for identity sources), then
acknowledge them. Effectively exactly once, whatever the point a worker is killed at:

- before the log append: nothing durable happened; the messages are delivered again;
- after the identity graph's commit, before the log's: the records are known, a
  redelivery adds nothing to the graph and gets the same golden ids (the identity
  partition appends each message right after its identity step);
- after the log append, before the online write: the redelivered events are duplicates
  (``(source, event_id)`` is unique) and the watermark, stuck before them, is caught up
  from the log (``ordered_apply``);
- after the online write, before following identity changes: the next worker resolving
  identities follows them (the online store keeps the last change it followed);
- after all that, before the acknowledgement: all duplicates, nothing changes.

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
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from crmfs.errors import IngestError, StorageError
from crmfs.identity.graph import IdentityGraph
from crmfs.ingestion.bus import decode_events
from crmfs.ingestion.bus_routes import routes
from crmfs.ingestion.commit_lock import CommitLock
from crmfs.ingestion.keying import MappedKeys
from crmfs.ingestion.pipeline import Checked, IngestionPipeline, IngestReport
from crmfs.ingestion.worker_commit import BatchCommitter
from crmfs.storage.bus import IDENTITY_PARTITION, BusConsumer, Delivery

_log = logging.getLogger(__name__)
# Outages of Redis, the disk or SQLite: the batch is retried after a pause, never dead-lettered.
OUTAGES = (StorageError, OSError)


@dataclass(frozen=True)
class WorkerOptions:
    """``max_messages`` per fetch, ``block_ms`` waiting for new ones, ``rebalance_every_s``
    between looks at the other workers, ``report_every_s`` between progress lines,
    ``outage_pause_s`` before a batch that met an outage is tried again, ``gap_timeout_s``
    a stuck online watermark is waited for before the log is caught up (a worker died
    between its append and its online write)."""

    max_messages: int = 64
    block_ms: int = 500
    rebalance_every_s: float = 1.0
    report_every_s: float = 10.0
    outage_pause_s: float = 1.0
    gap_timeout_s: float = 5.0


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
        lock: CommitLock,
        options: WorkerOptions | None = None,
        report: Callable[[str], None] | None = None,
        backlog: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.consumer = consumer
        self.options = options or WorkerOptions()
        self.committer = BatchCommitter(pipeline, keys, graph, lock, self.options.gap_timeout_s)
        self.stats = WorkerStats()
        self._report = report
        self._backlog = backlog
        self._identity_sources = {n for n, r in routes(pipeline.catalog).items() if r.key is None}

    # -- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> WorkerStats:
        """Work until ``stop`` is set (then finish the batch in hand, let go of the
        partitions and return)."""
        self.consumer.start()
        options = self.options
        next_rebalance = next_report = next_settle = time.monotonic()
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
                    if not deliveries and now >= next_settle:  # idle: a gap to catch up?
                        self.committer.settle(resolving=False)
                        next_settle = now + options.gap_timeout_s / 4
                except OUTAGES as exc:
                    self._outage(exc, stop)
                    continue
                if deliveries:
                    self.handle(deliveries, stop)
        finally:
            if self._report is not None:
                self._progress(reported, final=True)
            self.consumer.close()
            self.committer.close()
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
                self.committer.settle(resolving=True)
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
        """Check ``items`` (no lock), then commit them source by source."""
        at = self.pipeline.clock()
        checked = [(d, self.pipeline.check(d.source, t, at)) for d, t in items]
        resolving = self.consumer.owns(IDENTITY_PARTITION)
        reports = []
        for parts, identity in _groups(checked, self._identity_sources):
            if identity:
                report = self.committer.commit_identity(parts, at, resolving, follow=True)
            else:
                report = self.committer.commit_plain(parts, at)
            reports.append(report)
            self.stats.add(report)
        return reports

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
        ordered = self.committer.ordered
        self._report(
            f"worker {self.consumer.name}{' stopped' if final else ''}: partitions {owned}"
            f" | records {stats.records:,} ({rate:,.0f}/s) | accepted {stats.accepted:,}"
            f" | duplicates {stats.duplicates:,} | quarantined {stats.quarantined:,}"
            f" | dead letters {stats.dead_letters:,} | messages {stats.messages:,}"
            f" | refolds {ordered.refolds:,} | catch-ups {ordered.catch_ups:,}{backlog}"
        )
        return stats.records, now


def _partition_order(name: str) -> tuple[int, int]:
    return (0, 0) if name == IDENTITY_PARTITION else (1, int(name))


def _groups(
    checked: list[tuple[Delivery, Checked]], identity_sources: set[str]
) -> list[tuple[list[Checked], bool]]:
    """Commit groups in order, each with whether its source is resolved by the identity
    graph: other sources' messages together per source; identity sources' messages in runs
    of one source, in their order (the identity partition's order, as published)."""
    by_source: dict[str, list[Checked]] = {}
    runs: list[tuple[list[Checked], bool]] = []
    for _, part in checked:
        name = part.source.name
        if name not in identity_sources:
            by_source.setdefault(name, []).append(part)
        elif runs and runs[-1][0][0].source.name == name:
            runs[-1][0].append(part)
        else:
            runs.append(([part], True))
    return [(parts, False) for parts in by_source.values()] + runs
