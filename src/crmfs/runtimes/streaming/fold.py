"""Fold a batch of events into per-entity states, with the view plan compiled once.

``ViewFold`` turns a plan into flat per-hop-group steps (which column feeds which slot
through which aggregator update) when the processor is built, so a batch only loops over
its events. Tile indexes are computed for the whole batch at once, tiles below the live
floor are pruned only when a state holds one, and latest values compare one candidate
(the batch's latest event of the entity) instead of every event. States are decoded with
their tiles left encoded (``decode_for_update``): only the tiles an event reaches are decoded,
into lists, and encoded again.
The meaning of each update stays in ``crmfs.transform.aggregators``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from crmfs.runtimes.gc_pause import gc_paused
from crmfs.runtimes.streaming.state import (
    State,
    decode_for_update,
    encoder,
    new_state,
    tile_encoder,
    tile_for_update,
)
from crmfs.storage.event_log import EVENT_TIME, SEQ
from crmfs.storage.ports import EntityKey
from crmfs.transform.aggregators import Partial
from crmfs.transform.filter_eval import compile_filter
from crmfs.transform.plan import HopGroup, ViewPlan

Update = Callable[[Partial, Any, int, int], Partial]
ReadBlobs = Callable[[list[EntityKey]], list[bytes | None]]


@dataclass(frozen=True)
class _Step:
    """One window feature's update: ``column`` is None for a count of events."""

    slot: int
    column: int | None
    update: Update
    adds_one: bool  # ``update`` adds one to the partial, whatever the event


@dataclass(frozen=True)
class _GroupFold:
    group: HopGroup
    inits: tuple[Callable[[], Partial], ...]
    steps: tuple[_Step, ...]


# A hop group bound to one batch: live floor, tile of every row, partial inits, slots that
# count events, (slot, update) of other features of events, (slot, column, update) of field
# features.
_BoundGroup = tuple[
    int,
    list[int],
    tuple[Callable[[], Partial], ...],
    tuple[int, ...],
    tuple[tuple[int, Update], ...],
    tuple[tuple[int, list[Any], Update], ...],
]


@dataclass(frozen=True)
class _Batch:
    """The view's events of one batch as Python columns, rows of each entity in log order."""

    rows_by_key: dict[EntityKey, list[int]]
    columns: list[list[Any]]
    times: list[int]
    seqs: list[int]
    tiles: list[list[int]]  # per hop group: tile index of every row


class ViewFold:
    """The streaming update of one view's states, compiled from its plan."""

    def __init__(self, plan: ViewPlan) -> None:
        self.plan = plan
        self.fields = plan.value_fields()
        column_of = {name: i for i, name in enumerate(self.fields)}
        self._keep = None if plan.view.filter is None else compile_filter(plan.view.filter)
        self._groups = tuple(
            _GroupFold(
                group,
                tuple(w.aggregator.init for w in group.features),
                tuple(
                    _Step(
                        w.slot,
                        None if w.feature.field is None else column_of[w.feature.field],
                        w.aggregator.update,
                        w.aggregator.adds_one_per_event,
                    )
                    for w in group.features
                ),
            )
            for group in plan.hop_groups
        )
        self._latest_columns = tuple(column_of[f.field] for f in plan.latest)

    def fold(self, events: pa.Table, now: int, read: ReadBlobs) -> dict[EntityKey, bytes]:
        """New state blobs of the entities with events in ``events`` (ingested at ``now``)."""
        with gc_paused():
            return self._fold(self._batch(events), now, read)

    def _fold(self, batch: _Batch, now: int, read: ReadBlobs) -> dict[EntityKey, bytes]:
        if not batch.rows_by_key:
            return {}
        groups = [self._bound(g, batch, now) for g in range(len(self._groups))]
        keys = list(batch.rows_by_key)
        out: dict[EntityKey, bytes] = {}
        plan = self.plan
        encode, encode_tile = encoder(), tile_encoder()
        for key, blob in zip(keys, read(keys), strict=True):
            state = new_state(plan) if blob is None else decode_for_update(blob)
            for tiles, k in self._apply(state, batch.rows_by_key[key], batch, groups):
                partials = tiles.get(k)
                if partials is not None:  # not pruned meanwhile
                    tiles[k] = encode_tile(partials)
            out[key] = encode(state)
        return out

    def _batch(self, events: pa.Table) -> _Batch:
        columns = [_values(events[name]) for name in self.fields]
        keys = events[self.plan.view.key].to_pylist()
        rows_by_key: dict[EntityKey, list[int]] = {}
        keep = self._keep
        fields = self.fields
        for i, key in enumerate(keys):
            if key is None:
                continue  # this view cannot place an event without its entity key
            if keep is not None and not keep(
                {f: c[i] for f, c in zip(fields, columns, strict=True)}
            ):
                continue
            rows = rows_by_key.get(key)
            if rows is None:
                rows_by_key[key] = [i]
            else:
                rows.append(i)
        time_column = events[EVENT_TIME].to_numpy()
        # ``tile_of`` for every row: numpy floors integer division like Python does.
        tiles = [((time_column - 1) // g.group.hop_us).tolist() for g in self._groups]
        return _Batch(rows_by_key, columns, time_column.tolist(), events[SEQ].to_pylist(), tiles)

    def _bound(self, g: int, batch: _Batch, now: int) -> _BoundGroup:
        """A hop group's steps bound to this batch's columns."""
        fold = self._groups[g]
        tally = tuple(s.slot for s in fold.steps if s.column is None and s.adds_one)
        counts = tuple(
            (s.slot, s.update) for s in fold.steps if s.column is None and not s.adds_one
        )
        valued = tuple(
            (s.slot, batch.columns[s.column], s.update) for s in fold.steps if s.column is not None
        )
        first_live = fold.group.first_live_tile(now)
        return first_live, batch.tiles[g], fold.inits, tally, counts, valued

    def _apply(
        self, state: State, rows: Sequence[int], batch: _Batch, groups: list[_BoundGroup]
    ) -> list[tuple[dict[int, Any], int]]:
        """Fold the entity's ``rows`` of ``batch`` into its state, in place; returns the
        tiles it decoded or created (``(tiles, index)``), which are to be encoded again."""
        times, seqs = batch.times, batch.seqs
        reached: list[tuple[dict[int, Any], int]] = []
        for (floor, tile_of_row, inits, tally, counts, valued), tiles in zip(
            groups, state[0], strict=True
        ):
            for i in rows:
                k = tile_of_row[i]
                if k < floor:
                    continue  # late: no read at or after ``now`` reaches this tile
                partials = tiles.get(k)
                if partials is None:
                    partials = tiles[k] = [init() for init in inits]
                    reached.append((tiles, k))
                elif type(partials) is not list:  # encoded (or format 1): decoded once reached
                    partials = tiles[k] = tile_for_update(partials)
                    reached.append((tiles, k))
                for slot in tally:
                    partials[slot] += 1
                t, s = times[i], seqs[i]
                for slot, update in counts:
                    partials[slot] = update(partials[slot], None, t, s)
                for slot, values, update in valued:
                    value = values[i]
                    if value is not None:
                        partials[slot] = update(partials[slot], value, t, s)
            if tiles and min(tiles) < floor:
                for k in [k for k in tiles if k < floor]:
                    del tiles[k]
        if self._latest_columns:
            newest = rows[-1] if len(rows) == 1 else max(rows, key=lambda i: (times[i], seqs[i]))
            order = (times[newest], seqs[newest])
            latest = state[1]
            for j, column in enumerate(self._latest_columns):
                current = latest[j]
                if current is None or order > (current[0], current[1]):
                    latest[j] = [order[0], order[1], batch.columns[column][newest]]
        return reached


def _values(column: pa.ChunkedArray) -> list[Any]:
    """A field's values as the runtimes see them: timestamps as integer microseconds."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    values: list[Any] = column.to_pylist()
    return values
