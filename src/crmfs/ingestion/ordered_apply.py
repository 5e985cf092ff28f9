"""Online writes in log order, with folds done outside the commit lock.

The online store applies the event log in order: its watermark is the last seq applied, and
a write names the watermark it expects (``expected``) and moves it past its batch. Stream
workers append under the commit lock, then fold outside it, in parallel; each batch is
written at its *turn*, when the watermark is just before the batch's first seq.

A fold read the states at some watermark ``w``; by its turn, batches between ``w`` and the
turn may have been written. If any of them has events of the same source with a key of this
batch (same view, same entity: a partition moved, a worker stalled past its lease, a view
keyed by another field than the partition key), the batch is folded again, at its turn,
when nobody else can write. Other sources' views are other tables: never a conflict.

A worker killed between its append and its write leaves a *gap*: the watermark stops before
its batch and every later batch waits. A waiter that sees the watermark stuck for
``gap_timeout_s``, or an idle worker (``settle_if_stalled``), applies the log from the
watermark on under the commit lock (``catch_up``); a live writer whose batch that covered
finds the watermark past it and has nothing left to write.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crmfs.definitions import Catalog
from crmfs.runtimes.streaming.processor import StreamProcessor, Updates
from crmfs.storage.event_log import INGESTED_AT, SEQ, EventLog
from crmfs.storage.ports import Watermark, WatermarkMoved

_FIRST_PAUSE_S = 0.0002
_LONGEST_PAUSE_S = 0.002


@dataclass(frozen=True)
class Folded:
    """A batch (as appended: seqs, ingestion time) folded into new states, read from the
    online store at watermark seq ``read_at`` or later."""

    source: str
    batch: pa.Table
    updates: Updates
    read_at: int


class OrderedApply:
    """Writes appended batches online in log order (see the module's docstring)."""

    def __init__(
        self,
        processor: StreamProcessor,
        log: EventLog,
        catalog: Catalog,
        lock: AbstractContextManager[Any],
        gap_timeout_s: float,
    ) -> None:
        self.processor = processor
        self.online = processor.online
        self.log = log
        self.lock = lock
        self.gap_timeout_s = gap_timeout_s
        self._keys: dict[str, list[str]] = {}
        for view in catalog.views.values():
            if view.via is None and not view.entity.identity:
                keys = self._keys.setdefault(view.source.name, [])
                if view.key not in keys:
                    keys.append(view.key)
        self._idle: tuple[int, float] | None = None
        self.refolds = 0
        self.catch_ups = 0

    def fold(self, source: str, batch: pa.Table) -> Folded:
        """Fold ``batch`` on the states as they are now (no lock needed)."""
        read_at = self.online.watermark().seq
        now = batch[INGESTED_AT][0].as_py() if batch.num_rows else 0
        return Folded(source, batch, self.processor.fold(source, batch, now), read_at)

    def write(self, folded: Folded) -> None:
        """Write ``folded`` at its turn (folded again first if a batch written since its
        fold touched its entities); nothing if a catch-up applied it meanwhile."""
        batch = folded.batch
        if batch.num_rows == 0:
            return
        first, last = batch[SEQ][0].as_py(), batch[SEQ][-1].as_py()
        now = batch[INGESTED_AT][0].as_py()
        while True:
            mark = self.turn(first, last, holding_lock=False)
            if mark is None:
                return
            if self._conflicts(folded, mark.seq):
                self.refolds += 1
                folded = Folded(
                    folded.source,
                    batch,
                    self.processor.fold(folded.source, batch, now),
                    mark.seq,
                )
            try:
                self.online.write(folded.updates, Watermark(last, now), expected=mark)
                return
            except WatermarkMoved:
                continue  # a catch-up: look again

    def apply_locked(self, source: str, batch: pa.Table) -> None:
        """Apply ``batch`` (just appended, the commit lock held) at its turn."""
        if batch.num_rows == 0:
            return
        first, last = batch[SEQ][0].as_py(), batch[SEQ][-1].as_py()
        if last - first + 1 != batch.num_rows:  # not one run of seqs: apply the log in order
            self._catch_up(holding_lock=True)
        elif self.turn(first, last, holding_lock=True) is not None:
            self.processor.apply_committed(source, batch, self.log)

    def turn(self, first: int, last: int, holding_lock: bool) -> Watermark | None:
        """Wait until the watermark is just before ``first``; that watermark, or None once it
        is at ``last`` or past (a catch-up applied the batch). A watermark stuck for
        ``gap_timeout_s`` is a gap: the log is caught up."""
        pause = _FIRST_PAUSE_S
        seen, since = -1, time.monotonic()
        while True:
            mark = self.online.watermark()
            if mark.seq >= last:
                return None
            if mark.seq == first - 1:
                return mark
            now = time.monotonic()
            if mark.seq != seen:
                seen, since = mark.seq, now
            elif mark.seq >= first or now - since >= self.gap_timeout_s:
                self._catch_up(holding_lock)
                continue
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE_S)

    def settle_if_stalled(self) -> bool:
        """For an idle worker: catch the log up if the watermark has been stuck behind it
        for ``gap_timeout_s`` (a worker died between its append and its write)."""
        mark = self.online.watermark()
        if mark.seq >= self.log.max_seq():
            self._idle = None
            return False
        now = time.monotonic()
        if self._idle is None or self._idle[0] != mark.seq:
            self._idle = (mark.seq, now)
            return False
        if now - self._idle[1] < self.gap_timeout_s:
            return False
        self._catch_up(holding_lock=False)
        self._idle = None
        return True

    def _catch_up(self, holding_lock: bool) -> None:
        with nullcontext() if holding_lock else self.lock:
            self.catch_ups += 1
            self.processor.catch_up(self.log)

    def _conflicts(self, folded: Folded, turn: int) -> bool:
        """Whether events of ``folded``'s source written after its fold read the states
        (seqs in ``(read_at, turn]``) share a view key with its batch."""
        keys = self._keys.get(folded.source)
        if folded.read_at >= turn or not keys:
            return False
        try:
            files = self.log.segment_files(folded.source, folded.read_at)
            written = pa.concat_tables(
                [pq.read_table(f, columns=[SEQ, *keys]) for f in files],
                promote_options="default",
            )
        except (OSError, pa.ArrowException):  # a file compacted away meanwhile: be safe
            return True
        if not written.num_rows:
            return False
        seqs = written[SEQ]
        written = written.filter(
            pc.and_(pc.greater(seqs, folded.read_at), pc.less_equal(seqs, turn))
        )
        return any(
            pc.any(pc.is_in(written[key], value_set=pc.unique(folded.batch[key]))).as_py()
            for key in keys
        )
