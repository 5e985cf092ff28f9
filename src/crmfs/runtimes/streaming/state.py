"""Per-entity state of one view: tiles of partial aggregates and latest values.

State layout (a msgpack document)::

    [tiles, latest]
    tiles  = [ {tile_index: [partial per feature of the hop group]} per hop group ]
    latest = [ [event_time, seq, value] or None per latest feature ]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from crmfs.transform.plan import ViewPlan

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
