"""A small pure-Python reference of DESIGN.md section 4, written from the spec alone.

It shares no code with the runtimes: windows, latest values and point-in-time rules are
restated here as directly as possible, so the runtimes are checked against the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RefEvent:
    key: str | None
    event_time: int  # microseconds
    seq: int
    ingested_at: int
    values: dict[str, Any]


@dataclass(frozen=True)
class RefWindow:
    name: str
    function: str
    field: str | None
    window: int  # microseconds
    hop: int
    n: int | None = None


def visible(events: list[RefEvent], key: str, t: int, as_served: bool) -> list[RefEvent]:
    return [
        e
        for e in events
        if e.key == key and e.event_time <= t and (not as_served or e.ingested_at <= t)
    ]


def window_value(spec: RefWindow, events: list[RefEvent], t: int) -> Any:
    lower = ((t - spec.window) // spec.hop) * spec.hop
    inside = [e for e in events if lower < e.event_time <= t]
    if spec.field is None:
        assert spec.function == "count"
        return len(inside)
    present = [e for e in inside if e.values.get(spec.field) is not None]
    values = [e.values[spec.field] for e in present]
    newest_first = sorted(present, key=lambda e: (e.event_time, e.seq), reverse=True)
    if spec.function == "count":
        return len(values)
    if spec.function == "sum":
        return sum(values)
    if spec.function == "mean":
        return float(sum(values)) / len(values) if values else None
    if spec.function == "min":
        return min(values) if values else None
    if spec.function == "max":
        return max(values) if values else None
    if spec.function == "count_distinct":
        return len(set(values))
    if spec.function == "last":
        return newest_first[0].values[spec.field] if newest_first else None
    if spec.function == "last_n":
        assert spec.n is not None
        return [e.values[spec.field] for e in newest_first[: spec.n]]
    raise AssertionError(spec.function)


def latest_value(field: str, events: list[RefEvent], t: int, ttl: int | None) -> Any:
    if not events:
        return None
    last = max(events, key=lambda e: (e.event_time, e.seq))
    if ttl is not None and t - last.event_time > ttl:
        return None
    return last.values.get(field)
