"""Per-entity state of one view: tiles of partial aggregates and latest values.

State layout (a msgpack document, format 2)::

    [tiles, latest]
    tiles  = [ {tile_index: bin(msgpack([partial per feature of the hop group]))} per hop group ]
    latest = [ [event_time, seq, value] or None per latest feature ]

Each tile's partials are a msgpack document of their own, carried as ``bytes`` inside the
state: a batch reaches one or two tiles of an entity, so the fold decodes and re-encodes only
those and copies the others as they are. A read joins the documents of the tiles in a window
behind an ``array_header`` and decodes them in one call.

States written before (format 1) held each tile's partials inline, as an array. Reads and the
fold accept such tiles too, and the fold writes back every tile it reaches in this format; a
``materialize`` rewrites a view's states in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
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
    """A state for the fold: tiles stay encoded until the fold reaches them
    (``tile_for_update``); the others are packed back as the bytes they are."""
    frozen = msgpack.unpackb(blob, raw=False, strict_map_key=False, use_list=False)
    return [frozen[0], list(frozen[1])]


FIX_ARRAYS = tuple(bytes([0x90 | n]) for n in range(16))  # headers of arrays below 16


def array_header(length: int) -> bytes:
    """The start of a msgpack array of ``length`` elements: with the documents of that many
    tiles behind it, one document that decodes all of them at once."""
    if length < 16:
        return FIX_ARRAYS[length]
    return b"\xdd" + length.to_bytes(4, "big")


def tile_for_update(tile: bytes | Sequence[Any]) -> list[Any]:
    """A tile's partials, from its document (or inline: format 1), each one an aggregator
    may update in place (``thaw``)."""
    partials = msgpack.unpackb(tile, raw=False, use_list=False) if type(tile) is bytes else tile
    return [thaw(p) for p in partials]


def tile_encoder() -> Callable[[list[Any]], bytes]:
    """Encodes a tile's partials (one packer reused, not thread-safe)."""
    pack: Callable[[list[Any]], bytes] = msgpack.Packer(use_bin_type=True).pack
    return pack


def expanded(state: State) -> State:
    """``state`` with every tile's partials decoded (lists), for merges and comparisons."""
    return [
        [{k: tile_for_update(t) for k, t in tiles.items()} for tiles in state[0]],
        list(state[1]),
    ]


def has_inline_tiles(state: State) -> bool:
    """Whether a tile of ``state`` holds its partials inline (format 1), not encoded."""
    return any(type(t) is not bytes for tiles in state[0] for t in tiles.values())


def compacted(state: State) -> State:
    """``state`` with every tile's partials encoded, as stored."""
    pack = tile_encoder()
    return [
        [{k: t if type(t) is bytes else pack(t) for k, t in tiles.items()} for tiles in state[0]],
        state[1],
    ]


def thaw(partial: Any) -> Any:
    """A partial an aggregator may update in place: a list for an array, else as it is.

    Entries inside (``[time, seq, value]`` of ``last_n``) may stay tuples: updates replace
    them, never change them.
    """
    return list(partial) if type(partial) is tuple else partial


def decode_frozen(blob: bytes) -> Any:
    """A state to read, not to update: tuples instead of lists, which are cheaper to build."""
    return msgpack.unpackb(blob, raw=False, strict_map_key=False, use_list=False)


def merged_blob(plan: ViewPlan, blobs: Iterable[bytes | None]) -> bytes | None:
    """The encoded merge of several entities' states (None where all are absent)."""
    merged, found = new_state(plan), False
    for blob in blobs:
        if blob is not None:
            merged, found = merge_states(plan, merged, decode(blob)), True
    return encode(merged) if found else None


def merge_states(plan: ViewPlan, a: State, b: State) -> State:
    """Combine two entities' states into one (used when identities merge)."""
    merged = new_state(plan)
    a, b = expanded(a), expanded(b)
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
    return compacted(merged)
