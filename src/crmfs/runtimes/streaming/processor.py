"""Apply committed events to the online store, exactly once, in log order.

The online store keeps a watermark (the last applied log seq) written in the same
transaction as the tiles, and a write only succeeds if the watermark is still the one
the tiles were read under (optimistic concurrency between processes). A crash between
the log commit and the online write is repaired by ``catch_up``; nothing is applied twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc

from crmfs.runtimes.streaming.fold import ViewFold
from crmfs.runtimes.streaming.fold_worker import (
    FoldWorker,
    FoldWorkerError,
    OnlineOpener,
    split_by_key,
)
from crmfs.storage.event_log import INGESTED_AT, SEQ, EventLog
from crmfs.storage.ports import EntityKey, OnlineStore, StagedWrite, Watermark, WatermarkMoved
from crmfs.transform.plan import ViewPlan

Updates = dict[str, dict[EntityKey, bytes]]
_MAX_RETRIES = 20
_log = logging.getLogger(__name__)
# Batches from this size are folded on two cores (a share by a worker process); below it, the
# round trip to the worker costs more than it saves.
PARALLEL_FOLD_MIN_ROWS = 4_000
# The share of a batch's entities folded in this process, out of 8. This process also writes
# the new states, but SQLite does most of that work without the GIL while the worker folds:
# an even split measured best (3/8 and 5/8 were slower).
LOCAL_SHARE = 4
# A share takes well under a second; a worker silent for this long is taken for stuck.
_WORKER_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Prepared:
    """A batch folded before its append committed, its new states already written into an
    open online write (``staged``): committed if the log gives the batch the seqs and
    ingestion time it was folded with, aborted otherwise. The write holds the online store
    from ``prepare`` on, so nothing can move it meanwhile."""

    source: str
    first_seq: int
    rows: int
    now: int
    staged: StagedWrite

    def abort(self) -> None:
        self.staged.abort()

    def fits(self, source: str, batch: pa.Table) -> bool:
        """Whether ``batch``, as committed, is the batch these states were folded from."""
        return (
            source == self.source
            and batch.num_rows == self.rows
            and batch[SEQ][0].as_py() == self.first_seq
            and batch[INGESTED_AT][0].as_py() == self.now
        )


KeyColumns = Callable[[str, pa.Table], pa.Table]


class StreamProcessor:
    """Folds batches of events into the tiles of every view of their source."""

    def __init__(
        self,
        online: OnlineStore,
        plans: Sequence[ViewPlan],
        worker_online: OnlineOpener | None = None,
        key_columns: KeyColumns | None = None,
    ) -> None:
        """``worker_online`` opens the online store in another process: with it, large
        batches are folded on two cores (see ``fold_worker``). ``key_columns`` adds the key
        columns of views whose keys are not in the log (views rolled up by a relation: each
        event's parent now) to a source's events before they are folded."""
        self.online = online
        self._key_columns = key_columns
        self._plans = list(plans)
        self._folds = [ViewFold(plan) for plan in self._plans]
        self._by_source: dict[str, list[int]] = {}
        for index, plan in enumerate(self._plans):
            self._by_source.setdefault(plan.view.source.name, []).append(index)
        self._worker_online = worker_online
        self._worker: FoldWorker | None = None
        self._starting = threading.Lock()

    def prepare(self, source: str, batch: pa.Table) -> Prepared | None:
        """Fold ``batch`` (as ``EventLog.predict`` says it will be committed) ahead of its
        append, writing the new states into an open online write as they are ready; None if
        the online store is not where the batch follows on.

        The caller must end the result: ``apply_committed`` commits it (or aborts it if the
        batch committed is another), ``Prepared.abort`` drops it.
        """
        if batch.num_rows == 0:
            return None
        expected = self.online.watermark()
        first_seq = batch[SEQ][0].as_py()
        if expected.seq != first_seq - 1:
            return None
        try:
            staged = self.online.begin_write(expected)
        except WatermarkMoved:
            return None
        now = batch[INGESTED_AT][0].as_py()
        try:
            self.fold(source, batch, now, staged)
        except BaseException:
            staged.abort()
            raise
        return Prepared(source, first_seq, batch.num_rows, now, staged)

    def apply_committed(
        self, source: str, batch: pa.Table, log: EventLog, prepared: Prepared | None = None
    ) -> None:
        """Apply a batch just committed to the log; falls back to ``catch_up`` if behind.

        ``prepared``: the batch folded ahead (``prepare``), committed if it fits the batch.
        """
        if prepared is not None:
            if batch.num_rows and prepared.fits(source, batch):
                mark = Watermark(seq=batch[SEQ][-1].as_py(), ingested_at=prepared.now)
                try:
                    prepared.staged.commit(mark)
                    return
                except WatermarkMoved:  # a store whose write lease ran out (Redis)
                    self.catch_up(log)
                    return
            prepared.abort()
        if batch.num_rows == 0:
            return
        expected = self.online.watermark()
        first_seq = batch[SEQ][0].as_py()
        if expected.seq == first_seq - 1:
            now = batch[INGESTED_AT][0].as_py()
            updates = self.fold(source, batch, now)
            mark = Watermark(seq=batch[SEQ][-1].as_py(), ingested_at=now)
            try:
                self.online.write(updates, mark, expected=expected)
                return
            except WatermarkMoved:
                pass  # another process applied events meanwhile: take them from the log
        self.catch_up(log)

    def fold(
        self, source: str, events: pa.Table, now: int, staged: StagedWrite | None = None
    ) -> Updates:
        """New state blobs of every view of ``source`` after folding in ``events``.

        With ``staged``, each part is also written into it as soon as it is folded; a view's
        states are all read before the first of them is written (the staged write's own
        reads would see its rows).
        """
        updates: Updates = {}
        if self._key_columns is not None and source in self._by_source:
            events = self._key_columns(source, events)
        for index in self._by_source.get(source, []):
            view = self._folds[index]
            worker = self._fold_worker() if events.num_rows >= PARALLEL_FOLD_MIN_ROWS else None
            if worker is not None and worker.lock.acquire(blocking=False):
                try:
                    blobs = self._fold_on_two_cores(worker, index, events, now, staged)
                finally:
                    worker.lock.release()
            else:  # small batch, no worker, or another thread is using it
                read = partial(self.online.read, view.plan.table)
                blobs = view.fold(events, now, read)
                if staged is not None:
                    staged.add({view.plan.table: blobs})
            updates[view.plan.table] = blobs
        return updates

    def _fold_on_two_cores(
        self,
        worker: FoldWorker,
        index: int,
        events: pa.Table,
        now: int,
        staged: StagedWrite | None,
    ) -> dict[EntityKey, bytes]:
        """Fold one share of ``events`` here while ``worker`` folds the other; with
        ``staged``, this share's states are written while the worker is still folding."""
        view = self._folds[index]
        table = view.plan.table
        mine, theirs = split_by_key(events, view.plan.view.key, LOCAL_SHARE)
        keys = pc.unique(theirs[view.plan.view.key]).drop_null().to_pylist()
        states = dict(zip(keys, self.online.read(table, keys), strict=True))
        try:
            worker.submit(index, theirs, now, states)
        except FoldWorkerError as exc:
            self._drop_worker(exc)
            blobs = view.fold(events, now, partial(self.online.read, table))
            if staged is not None:
                staged.add({table: blobs})
            return blobs
        try:
            blobs = view.fold(mine, now, partial(self.online.read, table))
            if staged is not None:
                staged.add({table: blobs})
            try:
                theirs_blobs = worker.result(timeout=_WORKER_TIMEOUT_S)
            except FoldWorkerError as exc:
                self._drop_worker(exc)
                # The worker's share, from the states it was sent (read before any write).
                theirs_blobs = view.fold(theirs, now, partial(_given, states))
        except BaseException as exc:
            # The worker's reply may still be pending; a worker left like that would hand it
            # to the next share. Stop it and let the error through.
            self._drop_worker(exc)
            raise
        if staged is not None:
            staged.add({table: theirs_blobs})
        blobs.update(theirs_blobs)
        return blobs

    def _fold_worker(self) -> FoldWorker | None:
        with self._starting:  # one worker, even when threads share the processor
            return self._start_worker()

    def _start_worker(self) -> FoldWorker | None:
        if self._worker is None and self._worker_online is not None:
            try:
                self._worker = FoldWorker(self._worker_online, self._plans)
            except (OSError, ValueError, TypeError):
                # No second process here (no fork/pipe support, no interpreter to start, or
                # a worker that died at once): fold on one core.
                self._worker_online = None
        return self._worker

    def _drop_worker(self, reason: BaseException) -> None:
        """Stop using a worker that failed; later batches fold in this process."""
        _log.warning("fold worker stopped (%r); folding on one core from now on", reason)
        if self._worker is not None:
            self._worker.kill()
        self._worker = None
        self._worker_online = None

    def fold_in_this_process(self) -> None:
        """Fold every batch in this process from now on, without a fold worker (a stream
        worker scales by running more worker processes instead; measured faster too)."""
        with self._starting:
            worker, self._worker, self._worker_online = self._worker, None, None
        if worker is not None:
            worker.close()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def catch_up(self, log: EventLog) -> int:
        """Apply every committed event the online store has not seen; returns how many."""
        for _ in range(_MAX_RETRIES):
            expected = self.online.watermark()
            target = log.max_seq()
            if target <= expected.seq:
                return 0
            tables = {}
            for source in log.sources():
                table = log.read(source, after_seq=expected.seq, upto_seq=target)
                if table is not None and table.num_rows:
                    tables[source] = table
            now = max(
                [expected.ingested_at, *(max(t[INGESTED_AT].to_pylist()) for t in tables.values())]
            )
            updates: Updates = {}
            for source, table in tables.items():
                updates.update(self.fold(source, table, now))
            applied = int(sum(t.num_rows for t in tables.values()))
            try:
                self.online.write(updates, Watermark(target, now), expected=expected)
                return applied
            except WatermarkMoved:
                continue
        raise WatermarkMoved(expected, self.online.watermark())


def _given(states: dict[EntityKey, bytes | None], keys: list[EntityKey]) -> list[bytes | None]:
    return [states[key] for key in keys]
