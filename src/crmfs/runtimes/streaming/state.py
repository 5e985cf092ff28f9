"""Per-entity state of one view: tiles of partial aggregates and latest values.

State layout (a msgpack document)::

    [tiles, latest]
    tiles  = [ {tile_index: [partial per feature of the hop group]} per hop group ]
    latest = [ [event_time, seq, value] or None per latest feature ]
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from crmfs.transform.plan import ViewPlan, window_lower_bound

State = list[Any]


def new_state(plan: ViewPlan) -> State:
    return [[{} for _ in plan.hop_groups], [None] * len(plan.latest)]


def encode(state: State) -> bytes:
    return msgpack.packb(state, use_bin_type=True)


def encoder() -> Callable[[State], bytes]:
    """``encode`` for a batch of states: one msgpack packer reused (not thread-safe)."""
    pack: Callable[[State], bytes] = msgpack.Packer(use_bin_type=True).pack
    return pack


def decode(blob: bytes) -> State:
    state: State = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    return state


def decode_for_update(blob: bytes) -> State:
    """A state for the fold: its tiles' partials stay tuples until ``thaw``ed.

    Building tuples is cheaper than building lists, and a batch reaches few of an entity's
    tiles: the fold thaws those (``thaw`` of each partial) and packs the others as they
    are (msgpack writes a tuple as an array, like a list).
    """
    frozen = msgpack.unpackb(blob, raw=False, strict_map_key=False, use_list=False)
    return [frozen[0], list(frozen[1])]


def thaw(partial: Any) -> Any:
    """A partial an aggregator may update in place: a list for an array, else as it is.

    Entries inside (``[time, seq, value]`` of ``last_n``) may stay tuples: updates replace
    them, never change them.
    """
    return list(partial) if type(partial) is tuple else partial


def decode_frozen(blob: bytes) -> Any:
    """A state to read, not to update: tuples instead of lists, which are cheaper to build."""
    return msgpack.unpackb(blob, raw=False, strict_map_key=False, use_list=False)


def merge_states(plan: ViewPlan, a: State, b: State) -> State:
    """Combine two entities' states into one (used when identities merge)."""
    merged = new_state(plan)
    for g, group in enumerate(plan.hop_groups):
        tiles = merged[0][g]
        for source in (a[0][g], b[0][g]):
            for k, partials in source.items():
                current = tiles.get(k)
                if current is None:
                    tiles[k] = [
                        w.aggregator.merge(w.aggregator.init(), p)
                        for w, p in zip(group.features, partials, strict=True)
                    ]
                else:
                    tiles[k] = [
                        w.aggregator.merge(c, p)
                        for w, c, p in zip(group.features, current, partials, strict=True)
                    ]
    for i in range(len(plan.latest)):
        candidates = [x for x in (a[1][i], b[1][i]) if x is not None]
        merged[1][i] = max(candidates, key=lambda e: (e[0], e[1])) if candidates else None
    return merged


def read_values(plan: ViewPlan, state: State, now: int) -> tuple[list[Any], list[int | None]]:
    """Feature values at ``now`` in ``plan.output_names`` order, and each latest value's time.

    Windows cover ``L < event_time <= now``; latest values older than the TTL are None.
    """
    return StateReader(ReadPlan(plan), now).values(state)


Read = Callable[[list[Any]], Any]
Slot = Callable[[Sequence[Any]], Any]
_Feature = tuple[int, Slot, Read]  # output position, slot getter, read


class ReadPlan:
    """What reading a view's states needs that does not depend on the time, built once.

    Features of a hop group with the same window share one scan of the tiles; each then
    merges and finalizes its slot (``Aggregator.read``). Empty-window values are prepared
    here, except new lists (``last_n``), which every row gets its own of.
    """

    def __init__(self, plan: ViewPlan) -> None:
        self.ttl = plan.ttl_us
        self.empty: list[Any] = []  # per output: empty-window value, None where built per read
        # per hop group: hop, then per window length its features, then the fresh empties
        self.groups: list[tuple[int, list[tuple[int, list[_Feature]]], list[tuple[int, Read]]]]
        self.groups = []
        for group in plan.hop_groups:
            by_window: dict[int, list[_Feature]] = {}
            fresh: list[tuple[int, Read]] = []
            for w in group.features:
                position = len(self.empty)
                read = w.aggregator.read
                slot_of = operator.itemgetter(w.slot)
                by_window.setdefault(w.window_us, []).append((position, slot_of, read))
                empty = read([])
                if isinstance(empty, list):
                    fresh.append((position, read))
                    empty = None
                self.empty.append(empty)
            self.groups.append((group.hop_us, list(by_window.items()), fresh))
        self.windows = len(self.empty)
        self.empty += [None] * len(plan.latest)


class StateReader:
    """Reads states at one time: the tile range of every window is computed once."""

    def __init__(self, read_plan: ReadPlan, now: int) -> None:
        self.now = now
        self._ttl = read_plan.ttl
        self._empty = read_plan.empty
        self._windows = read_plan.windows
        self._groups: list[_GroupReader] = []
        for hop, by_window, fresh in read_plan.groups:
            spans = [
                (window_lower_bound(now, window, hop) // hop, features)
                for window, features in by_window
            ]
            narrowest = max(first for first, _ in spans)
            self._groups.append(_GroupReader((now - 1) // hop, narrowest, spans, fresh))

    def values(self, state: Sequence[Any]) -> tuple[list[Any], list[int | None]]:
        """Feature values in ``plan.output_names`` order, and each latest value's time.

        ``state`` may come from ``decode`` or ``decode_frozen``.
        """
        values = self._empty.copy()
        for group, tiles in zip(self._groups, state[0], strict=True):
            if not tiles:
                for position, read in group.fresh_empties:
                    values[position] = read([])
                continue
            last_tile = group.last_tile
            # Usually every tile is in every window of the group: no need to look at each.
            every = min(tiles) >= group.narrowest_first and max(tiles) <= last_tile
            for first, features in group.spans:
                in_window = (
                    list(tiles.values())
                    if every
                    else [p for k, p in tiles.items() if first <= k <= last_tile]
                )
                for position, slot_of, read in features:
                    values[position] = read(list(map(slot_of, in_window)))
        now, ttl = self.now, self._ttl
        times: list[int | None] = []
        position = self._windows
        for entry in state[1]:
            if entry is None or entry[0] > now or (ttl is not None and now - entry[0] > ttl):
                times.append(None)
            else:
                values[position] = entry[2]
                times.append(entry[0])
            position += 1
        return values, times


@dataclass(frozen=True, slots=True)
class _GroupReader:
    """A hop group read at one time."""

    last_tile: int
    narrowest_first: int  # the highest first tile of the group's windows
    spans: list[tuple[int, list[_Feature]]]  # a window's first tile, and its features
    fresh_empties: list[tuple[int, Read]]  # features whose empty value is a new list
