"""Reading feature values out of entity states, compiled once per view.

A read merges, for every window, the partials of the tiles inside it and finalizes them with
the view's aggregators (``Aggregator.read``). The tile loops and slot picking of a view are the
same for every state, so ``ReadPlan`` writes them out as one Python function when the view is
planned, and each read runs that function with the read time's tile bounds: the aggregators
stay the only place where a function's meaning is written, the generated code only decides
which partials reach them. A window with a single tile is finalized directly
(``read([p]) == finalize(p)``, a law of the algebra tested in
``tests/properties/test_aggregator_laws.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from crmfs.runtimes.streaming.state import (
    FIX_ARRAYS,
    array_header,
    compacted,
    has_inline_tiles,
)
from crmfs.transform.aggregators import Aggregator
from crmfs.transform.plan import PlannedWindow, ViewPlan

Values = tuple[list[Any], list[int | None]]
# A compiled read: (state, now) -> values, for the tile bounds it was built with.
StateRead = Callable[[Sequence[Any], int], Values]
Bounds = tuple[tuple[int, tuple[int, ...]], ...]
# The compiled factory: per hop group (last tile, first tile per window) -> a read.
_Factory = Callable[[Bounds], StateRead]


class ReadPlan:
    """What reading a view's states needs that does not depend on the time, built once."""

    def __init__(self, plan: ViewPlan) -> None:
        self.hops = [group.hop_us for group in plan.hop_groups]
        # per hop group, its window lengths in the order the compiled read expects them
        self.windows: list[list[int]] = [
            list(dict.fromkeys(w.window_us for w in group.features)) for group in plan.hop_groups
        ]
        self.factory: _Factory = _compile(plan, self.windows)
        # Every hop and window is a multiple of the quantum, so the bounds stay the same while
        # ``now // quantum`` and ``(now - 1) // quantum`` do: reads close in time share them.
        self.quantum = math.gcd(*self.hops, *(w for ws in self.windows for w in ws)) or 1
        self._last: tuple[tuple[int, int], StateRead] | None = None

    def bounds(self, now: int) -> Bounds:
        """Per hop group: the last tile at ``now`` and each window's first tile, that is
        ``window_lower_bound(now, window, hop) // hop``."""
        return tuple(
            [
                ((now - 1) // hop, tuple([(now - window) // hop for window in windows]))
                for hop, windows in zip(self.hops, self.windows, strict=True)
            ]
        )

    def read_at(self, now: int) -> StateRead:
        """The compiled read for ``now``'s tile bounds (kept for the next call with them)."""
        quantum = self.quantum
        span = (now // quantum, (now - 1) // quantum)
        last = self._last
        if last is not None and last[0] == span:
            return last[1]
        read = self.factory(self.bounds(now))
        self._last = (span, read)
        return read


class StateReader:
    """Reads states at one time: the tile range of every window is computed once."""

    def __init__(self, read_plan: ReadPlan, now: int) -> None:
        self.now = now
        self._read = read_plan.read_at(now)

    def values(self, state: Sequence[Any]) -> Values:
        """Feature values in ``plan.output_names`` order, and each latest value's time.

        The state may come from ``decode`` or ``decode_frozen``. Windows cover
        ``L < event_time <= now``; latest values older than the TTL are None.
        """
        return self._read(state, self.now)


def read_values(plan: ViewPlan, state: Sequence[Any], now: int) -> Values:
    """Feature values at ``now`` in ``plan.output_names`` order, and each latest value's time."""
    return StateReader(ReadPlan(plan), now).values(state)


def _decoded(documents: str, count: str) -> str:
    """The expression decoding ``count`` tiles' ``documents`` in one call: joined behind an
    array header (a fixarray byte looked up, below 16 tiles), then ``unpackb`` called from
    the read itself (a function in between, or a ``functools.partial`` with keywords, costs
    3-6% of a read)."""
    header = f"(H[{count}] if {count} < 16 else A({count}))"
    return f"unpackb({header} + b''.join({documents}), raw=False, use_list=False)"


def _is_identity(aggregator: Aggregator) -> bool:
    return type(aggregator).finalize is Aggregator.finalize


def _compile(plan: ViewPlan, windows: list[list[int]]) -> _Factory:
    """The source of the view's read, compiled; names are bound through ``scope``."""
    # The tiles a read needs are decoded by one msgpack call, as the array their documents
    # make once joined behind an array header (a call per tile costs a third of a read);
    # a format-1 state (tiles inline) makes the join raise TypeError, and the read is done
    # again on the state with its tiles encoded.
    scope: dict[str, Any] = {
        "unpackb": msgpack.unpackb,
        "H": FIX_ARRAYS,
        "A": array_header,
        "INLINE": has_inline_tiles,
        "ENCODED": compacted,
    }
    empty: list[Any] = []
    fresh: set[int] = set()  # outputs whose empty value is a new list, built per read
    for position, w in enumerate(plan.windows):
        value = w.aggregator.read([])
        if isinstance(value, list):
            fresh.add(position)
            value = None
        empty.append(value)
    empty += [None] * len(plan.latest)
    scope["EMPTY"] = empty
    lines = ["def factory(bounds):"]
    for g, group_windows in enumerate(windows):
        firsts = "".join(f"F{g}_{j}, " for j in range(len(group_windows)))
        lines.append(f"    L{g}, ({firsts}) = bounds[{g}]")
    lines += ["    def read(state, now):", "      try:"]
    body = ["        v = EMPTY.copy()", "        groups = state[0]"]
    positions = {w.feature.name: i for i, w in enumerate(plan.windows)}
    for g, group in enumerate(plan.hop_groups):
        body.append(f"        tiles = groups[{g}]")
        body.append("        if tiles:")
        reads = _group_read(g, windows[g], group.features, positions, fresh, scope)
        body += ["            " + line for line in reads]
        empties = [
            positions[w.feature.name] for w in group.features if positions[w.feature.name] in fresh
        ]
        if empties:
            body.append("        else:")
            body += [f"            v[{p}] = R{p}([])" for p in empties]
    body += _latest_read(plan)
    lines += body
    lines += [
        "      except TypeError:",
        "        if not INLINE(state):",
        "            raise",
        "        return read(ENCODED(state), now)",
        "    return read",
    ]
    exec(compile("\n".join(lines), f"<read of {plan.view.name}>", "exec"), scope)
    factory: _Factory = scope["factory"]
    return factory


def _group_read(
    g: int,
    windows: list[int],
    features: Sequence[PlannedWindow],
    positions: dict[str, int],
    fresh: set[int],
    scope: dict[str, Any],
) -> list[str]:
    """Lines reading one hop group's ``tiles`` (a non-empty dict tile -> encoded partials),
    each tile a read reaches decoded once."""
    lines: list[str] = []
    if len(windows) > 1:  # usually every tile is in every window: no need to look at each
        firsts = ", ".join(f"F{g}_{j}" for j in range(len(windows)))
        lines.append(f"every = min(tiles) >= max({firsts}) and max(tiles) <= L{g}")
        lines.append("if every:")
        lines.append(f"    everything = {_decoded('tiles.values()', 'len(tiles)')}")
        lines.append("else:  # each tile of the widest window decoded once")
        lines.append(f"    widest = min({firsts})")
        lines.append(f"    inside = [(k, p) for k, p in tiles.items() if widest <= k <= L{g}]")
        lines.append(
            "    inside = list(zip([k for k, _ in inside],"
            f" {_decoded('[p for _, p in inside]', 'len(inside)')}))"
        )
    for j, window in enumerate(windows):
        if len(windows) > 1:
            lines.append(f"t = everything if every else [p for k, p in inside if F{g}_{j} <= k]")
        else:
            lines.append(f"t = [p for k, p in tiles.items() if F{g}_{j} <= k <= L{g}]")
            lines.append(f"t = {_decoded('t', 'len(t)')}")
        one: list[str] = []
        many: list[str] = []
        none: list[str] = []
        for w in features:
            if w.window_us != window:
                continue
            p = positions[w.feature.name]
            scope[f"R{p}"] = w.aggregator.read
            if _is_identity(w.aggregator):
                one.append(f"v[{p}] = t[0][{w.slot}]")
            else:
                scope[f"Z{p}"] = w.aggregator.finalize
                one.append(f"v[{p}] = Z{p}(t[0][{w.slot}])")
            many.append(f"v[{p}] = R{p}([q[{w.slot}] for q in t])")
            if p in fresh:
                none.append(f"v[{p}] = R{p}([])")
        lines.append("if len(t) == 1:")
        lines += ["    " + line for line in one]
        lines.append("elif t:")
        lines += ["    " + line for line in many]
        if none:
            lines.append("else:")
            lines += ["    " + line for line in none]
    return lines


def _latest_read(plan: ViewPlan) -> list[str]:
    """Lines reading the latest values (``state[1]``) and returning the read's result."""
    lines = ["        latest = state[1]"]
    times = []
    for i in range(len(plan.latest)):
        position = len(plan.windows) + i
        fresh = "" if plan.ttl_us is None else f" and now - e[0] <= {plan.ttl_us}"
        lines += [
            f"        e = latest[{i}]",
            f"        if e is not None and e[0] <= now{fresh}:",
            f"            v[{position}] = e[2]",
            f"            t{i} = e[0]",
            "        else:",
            f"            t{i} = None",
        ]
        times.append(f"t{i}")
    lines.append(f"        return v, [{', '.join(times)}]")
    return lines
