"""Per-entity state of one view: tiles of partial aggregates and latest values.

State layout (a msgpack document)::

    [tiles, latest]
    tiles  = [ {tile_index: [partial per feature of the hop group]} per hop group ]
    latest = [ [event_time, seq, value] or None per latest feature ]
"""

from __future__ import annotations

from typing import Any

import msgpack

from crmfs.transform.plan import ViewPlan, window_lower_bound

State = list[Any]


def new_state(plan: ViewPlan) -> State:
    return [[{} for _ in plan.hop_groups], [None] * len(plan.latest)]


def encode(state: State) -> bytes:
    return msgpack.packb(state, use_bin_type=True)


def decode(blob: bytes) -> State:
    state: State = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    return state


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
    values: list[Any] = []
    for g, group in enumerate(plan.hop_groups):
        tiles = state[0][g]
        features = group.features
        last_tile = (now - 1) // group.hop_us
        for i, w in enumerate(features):
            lowest = window_lower_bound(now, w.window_us, w.hop_us) // w.hop_us
            in_window = [partials[i] for k, partials in tiles.items() if lowest <= k <= last_tile]
            values.append(w.aggregator.finalize(w.aggregator.merge_all(in_window)))
    times: list[int | None] = []
    ttl = plan.ttl_us
    for entry in state[1]:
        if entry is None or entry[0] > now or (ttl is not None and now - entry[0] > ttl):
            values.append(None)
            times.append(None)
        else:
            values.append(entry[2])
            times.append(entry[0])
    return values, times
