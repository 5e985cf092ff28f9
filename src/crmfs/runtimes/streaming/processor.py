"""Apply committed events to the online store, exactly once, in log order.

The online store keeps a watermark (the last applied log seq) written in the same
transaction as the tiles, and a write only succeeds if the watermark is still the one
the tiles were read under (optimistic concurrency between processes). A crash between
the log commit and the online write is repaired by ``catch_up``; nothing is applied twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from crmfs.runtimes.streaming.state import Event, State, apply_events, decode, encode, new_state
from crmfs.storage.event_log import EVENT_TIME, INGESTED_AT, SEQ, EventLog
from crmfs.storage.ports import EntityKey, OnlineStore, Watermark, WatermarkMoved
from crmfs.transform.filter_eval import compile_filter
from crmfs.transform.plan import ViewPlan

Updates = dict[str, dict[EntityKey, bytes]]
_MAX_RETRIES = 20


class StreamProcessor:
    """Folds batches of events into the tiles of every view of their source."""

    def __init__(self, online: OnlineStore, plans: Sequence[ViewPlan]) -> None:
        self.online = online
        self._by_source: dict[str, list[tuple[ViewPlan, Callable[[Mapping[str, Any]], bool]]]] = {}
        for plan in plans:
            self._by_source.setdefault(plan.view.source.name, []).append(
                (plan, compile_filter(plan.view.filter))
            )

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
        for plan, keep in self._by_source.get(source, []):
            updates[plan.table] = self._fold_view(plan, keep, events, now)
        return updates

    def _fold_view(
        self,
        plan: ViewPlan,
        keep: Callable[[Mapping[str, Any]], bool],
        events: pa.Table,
        now: int,
    ) -> dict[EntityKey, bytes]:
        fields = plan.value_fields()
        columns = [events[name].to_pylist() for name in fields]
        keys = events[plan.view.key].to_pylist()
        times = events[EVENT_TIME].to_pylist()
        seqs = events[SEQ].to_pylist()
        per_key: dict[EntityKey, list[Event]] = {}
        rows = zip(*columns, strict=True) if columns else ((),) * len(keys)
        for key, event_time, seq, row in zip(keys, times, seqs, rows, strict=True):
            if key is None:
                continue  # this view cannot place an event without its entity key
            values = dict(zip(fields, row, strict=True))
            if keep(values):
                per_key.setdefault(key, []).append((event_time, seq, values))
        if not per_key:
            return {}
        key_list = list(per_key)
        blobs = self.online.read(plan.table, key_list)
        out: dict[EntityKey, bytes] = {}
        for key, blob in zip(key_list, blobs, strict=True):
            state: State = new_state(plan) if blob is None else decode(blob)
            apply_events(plan, state, per_key[key], now)
            out[key] = encode(state)
        return out

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
