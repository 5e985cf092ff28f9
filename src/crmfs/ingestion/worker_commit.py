"""How a stream worker commits a batch of messages: which part holds the commit lock.

- **Sources resolved by the identity graph** (the identity partition) hold the lock
  throughout: the graph (reloaded if another process wrote it), the identity step and log
  append of each message, the online write at the batch's turn (``OrderedApply``), and the
  identity and relation followers. A merge or a split rewrites states that no fold in flight
  may have read: only this worker folds these sources, and only under the lock.
- **Other sources** hold the lock only while their batch is appended to the log: the batch
  is folded meanwhile, as the log will most likely number it (``EventLog.predict``), and
  the lock is let go the moment the append has committed, by the appending thread. The
  online write waits for the batch's turn, outside the lock, so two workers' folds and
  writes overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for

import pyarrow as pa

from crmfs.identity.graph import IdentityGraph
from crmfs.ingestion.commit_lock import CommitLock
from crmfs.ingestion.keying import MappedKeys
from crmfs.ingestion.ordered_apply import OrderedApply
from crmfs.ingestion.pipeline import Checked, IngestionPipeline, IngestReport, Stored
from crmfs.storage.event_log import INGESTED_AT, SEQ, AppendResult, Rejected


class BatchCommitter:
    """Commits checked messages of a stream worker (see the module's docstring)."""

    def __init__(
        self,
        pipeline: IngestionPipeline,
        keys: MappedKeys,
        graph: IdentityGraph,
        lock: CommitLock,
        gap_timeout_s: float,
    ) -> None:
        self.pipeline = pipeline
        self.keys = keys
        self.graph = graph
        self.lock = lock
        self.ordered = OrderedApply(
            pipeline.processor, pipeline.log, pipeline.catalog, lock, gap_timeout_s
        )
        self._appender = ThreadPoolExecutor(1, thread_name_prefix="worker-append")

    def commit_identity(
        self, parts: Sequence[Checked], at: int, resolving: bool, follow: bool
    ) -> IngestReport:
        """Commit parts of a source resolved by the identity graph, holding the lock.
        ``resolving``: this worker resolves identities (follow what is pending first);
        ``follow``: follow the changes this batch makes."""
        with self.lock:
            self.refresh(resolving or follow)
            if resolving:
                self.keys.follow()
            stored = self.pipeline.store(parts, at)
            self.ordered.apply_locked(stored.source.name, stored.accepted)
            if follow:
                self.keys.follow(stored.source.name)
        return stored.report()

    def commit_plain(self, parts: Sequence[Checked], at: int) -> IngestReport:
        """Commit parts of another source: the lock only while the log appends."""
        source = parts[0].source
        events = parts[0].events if len(parts) == 1 else pa.concat_tables([p.events for p in parts])
        event_ids = [event_id for part in parts for event_id in part.event_ids]
        rejected = [r for part in parts for r in part.rejected]
        self.lock.acquire()
        try:
            predicted = self.pipeline.log.predict(events, at)
            appending = self._appender.submit(
                self._append_and_let_go, source.name, events, event_ids, rejected, at
            )
        except BaseException:
            self.lock.release()
            raise
        try:
            folded = self.ordered.fold(source.name, predicted)
        except BaseException:
            wait_for([appending])  # the append's outcome stands; its write is caught up later
            raise
        result = appending.result()
        if not _same_batch(predicted, result.accepted):  # duplicates, or another appender
            folded = self.ordered.fold(source.name, result.accepted)
        self.ordered.write(folded)
        return Stored(
            source, sum(p.received for p in parts), result.accepted, [result], rejected
        ).report()

    def _append_and_let_go(
        self,
        source: str,
        events: pa.Table,
        event_ids: list[object],
        rejected: list[Rejected],
        at: int,
    ) -> AppendResult:
        try:
            return self.pipeline.log.append(source, events, event_ids, rejected, at)
        finally:
            self.lock.release()

    def settle(self, resolving: bool) -> None:
        """After a worker took over, or when idle: catch up a gap a dead worker left, and,
        for the worker resolving identities, follow what its predecessor did not."""
        caught_up = self.ordered.settle_if_stalled()
        if resolving or caught_up:
            with self.lock:
                self.refresh(resolving)
                if resolving:
                    self.keys.follow()

    def refresh(self, resolving: bool) -> None:
        """Before resolving or following: the graph as other processes left it, relation
        snapshots read again (another worker may have followed a relation)."""
        if resolving:
            self.graph.refresh()
        self.keys.forget_cached()

    def close(self) -> None:
        self._appender.shutdown()


def _same_batch(predicted: pa.Table, accepted: pa.Table) -> bool:
    """Whether the log accepted the batch as predicted (every event, these seqs and time)."""
    if predicted.num_rows != accepted.num_rows or not accepted.num_rows:
        return bool(predicted.num_rows == accepted.num_rows)
    return bool(
        predicted[SEQ][0].as_py() == accepted[SEQ][0].as_py()
        and predicted[INGESTED_AT][0].as_py() == accepted[INGESTED_AT][0].as_py()
    )
