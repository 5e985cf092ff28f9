"""Apply committed events to the online store, exactly once, in log order.

The online store keeps a watermark (the last applied log seq) written in the same
transaction as the tiles, and a write only succeeds if the watermark is still the one
the tiles were read under (optimistic concurrency between processes). A crash between
the log commit and the online write is repaired by ``catch_up``; nothing is applied twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import pyarrow as pa

from crmfs.runtimes.streaming.fold import ViewFold
from crmfs.storage.event_log import INGESTED_AT, SEQ, EventLog
from crmfs.storage.ports import EntityKey, OnlineStore, Watermark, WatermarkMoved
from crmfs.transform.plan import ViewPlan

Updates = dict[str, dict[EntityKey, bytes]]
_MAX_RETRIES = 20


class StreamProcessor:
    """Folds batches of events into the tiles of every view of their source."""

    def __init__(self, online: OnlineStore, plans: Sequence[ViewPlan]) -> None:
        self.online = online
        self._by_source: dict[str, list[ViewFold]] = {}
        for plan in plans:
            self._by_source.setdefault(plan.view.source.name, []).append(ViewFold(plan))

    def apply_committed(self, source: str, batch: pa.Table, log: EventLog) -> None:
        """Apply a batch just committed to the log; falls back to ``catch_up`` if behind."""
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

    def fold(self, source: str, events: pa.Table, now: int) -> Updates:
        """New state blobs of every view of ``source`` after folding in ``events``."""
        updates: Updates = {}
        for view in self._by_source.get(source, []):
            table = view.plan.table
            updates[table] = view.fold(events, now, partial(self.online.read, table))
        return updates

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
