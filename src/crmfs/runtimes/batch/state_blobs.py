"""Online states for a backfill, encoded from the batch queries' Arrow tables column-wise.

The documents have the streaming runtime's layout (``crmfs.runtimes.streaming.state``)::

    [tiles, latest]
    tiles  = [ {tile_index: bin(msgpack([partial per feature of the hop group]))} per hop group ]
    latest = [ [event_time, seq, value] or None per latest feature ]

and are built without a Python object per entity, tile or value: building such states,
packing them and freeing them took most of a backfill's time.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crmfs.runtimes.batch.msgpack_columns import (
    NIL,
    array_header,
    constant,
    encode,
    join,
    joined_runs,
    map_header,
    map_headers,
)

Keyed = tuple[pa.Array, pa.Array]  # (entity keys, one document per key)


def tile_maps(table: pa.Table) -> Keyed:
    """Each entity's ``{tile_index: bin([partials])}`` map of one hop group.

    ``table`` holds ``key, tile_index, partial...`` with each key's rows adjacent.
    """
    features = table.num_columns - 2
    partials = join(
        [constant(array_header(features))] + [encode(table.column(2 + i)) for i in range(features)]
    )
    tiles = join([encode(table.column(1)), encode(partials)])  # a binary array encodes as bin
    keys = table.column(0).combine_chunks()
    offsets = _runs(keys)
    maps = join([map_headers(np.diff(offsets)), joined_runs(tiles, offsets)])
    return keys.take(pa.array(offsets[:-1])), maps


def latest_entries(table: pa.Table) -> Keyed:
    """Each entity's ``[[time, seq, value] per latest feature]`` from ``key`` and a struct
    ``{t, s, v0, v1, ...}`` of its latest event."""
    latest = table.column(1).combine_chunks()
    features = latest.type.num_fields - 2
    time, seq = encode(pc.struct_field(latest, [0])), encode(pc.struct_field(latest, [1]))
    entry = constant(array_header(3))
    values = [encode(pc.struct_field(latest, [2 + i])) for i in range(features)]
    entries = join(
        [constant(array_header(features))] + [join([entry, time, seq, v]) for v in values]
    )
    return table.column(0).combine_chunks(), entries


def states(groups: list[Keyed], latest: Keyed | None, latest_count: int, keys: pa.Array) -> Keyed:
    """Each entity's whole state; ``keys`` lists entities that may have no tiles nor latest."""
    everyone = pc.unique(pa.chunked_array([k for k, _ in groups] + [keys], type=keys.type))
    if not len(everyone):
        return everyone, pa.array([], pa.large_binary())
    no_latest = array_header(latest_count) + NIL * latest_count
    parts = [constant(array_header(2)), constant(array_header(len(groups)))]
    parts += [_aligned(everyone, group, map_header(0)) for group in groups]
    parts.append(constant(no_latest) if latest is None else _aligned(everyone, latest, no_latest))
    return everyone, join(parts)


def _aligned(everyone: pa.Array, keyed: Keyed, missing: bytes) -> pa.Array:
    """``keyed``'s document for each of ``everyone`` (``missing`` for a key it lacks)."""
    keys, documents = keyed
    found: pa.Array = documents.take(pc.index_in(everyone, value_set=keys))
    return found.fill_null(constant(missing))


def _runs(keys: pa.Array) -> np.ndarray:
    """Offsets of the runs of equal adjacent keys: run i is ``offsets[i]:offsets[i + 1]``."""
    count = len(keys)
    if count == 0:
        return np.zeros(1, dtype=np.int64)
    changed = pc.not_equal(keys.slice(1), keys.slice(0, count - 1))
    starts = np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1
    return np.concatenate(([0], starts, [count])).astype(np.int64)
