"""Hierarchy: which parent (an account) a golden id (a contact) belongs to, over time.

A ``Relation`` says it with a source's events: the parent of golden id ``G`` at ``t`` is the
``parent_field`` of the latest relation event (by event time, then log order) among the
events of the records that were ``G`` at ``t`` and that were available at ``t``. Availability
and the records of ``G`` both depend on the time axis:

- ``effective``: an event is available from its event time; records by the effective mapping;
- ``recorded`` (what serving knew): from the later of its event and ingestion times;
  records by the recorded mapping;
- ``current``: every event, today's records (one span per golden id, unbounded).

``parent_spans`` computes each golden id's parents as spans ``(from, to, parent)``;
``rolled_up`` composes them with the records' golden-id spans into the mapping a rolled-up
view reads its events by: ``record_id -> parent`` over time (``IdentityGraph.intervals``
shape, the parent in the ``golden_id`` column).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import pyarrow as pa

from crmfs.identity.graph_schema import UNBOUNDED_FUTURE, UNBOUNDED_PAST

Span = tuple[int, int, Any]  # [from, to) and a value: a golden id or a parent key


@dataclass(frozen=True)
class RelationEvent:
    record_id: str
    available_us: int
    event_us: int
    seq: int
    parent: Any  # None: no parent from this event on


def spans_by_record(intervals: pa.Table) -> dict[str, list[Span]]:
    """``IdentityGraph.intervals`` as each record's spans, in time order."""
    spans: dict[str, list[Span]] = {}
    columns = [intervals.column(n).to_pylist() for n in ("record_id", "from_us", "to_us")]
    for record, start, end, golden in zip(
        *columns, intervals.column("golden_id").to_pylist(), strict=True
    ):
        spans.setdefault(record, []).append((start, end, golden))
    for line in spans.values():
        line.sort()
    return spans


def _record_steps(events: Iterable[RelationEvent]) -> dict[str, list[tuple[int, RelationEvent]]]:
    """Each record's latest event as events become available: (from when, which event)."""
    by_record: dict[str, list[RelationEvent]] = {}
    for event in events:
        by_record.setdefault(event.record_id, []).append(event)
    steps: dict[str, list[tuple[int, RelationEvent]]] = {}
    for record, found in by_record.items():
        found.sort(key=lambda e: (e.available_us, e.event_us, e.seq))
        line: list[tuple[int, RelationEvent]] = []
        for event in found:
            if not line or (event.event_us, event.seq) > (line[-1][1].event_us, line[-1][1].seq):
                if line and line[-1][0] == event.available_us:
                    line[-1] = (event.available_us, event)
                else:
                    line.append((event.available_us, event))
        steps[record] = line
    return steps


def parent_spans(
    records: Mapping[str, list[Span]], events: Iterable[RelationEvent]
) -> dict[Any, list[Span]]:
    """Each golden id's parent over time (spans without a parent left out)."""
    steps = _record_steps(events)
    members: dict[Any, list[tuple[str, int, int]]] = {}
    for record in steps:
        for start, end, golden in records.get(record, ()):
            members.setdefault(golden, []).append((record, start, end))
    found: dict[Any, list[Span]] = {}
    for golden, spans in members.items():
        cuts = {UNBOUNDED_PAST, UNBOUNDED_FUTURE}
        for record, start, end in spans:
            cuts.update((start, end))
            cuts.update(t for t, _ in steps[record] if start < t < end)
        bounds = sorted(cuts)
        line: list[Span] = []
        for start, end in pairwise(bounds):
            parent = _parent_at(start, spans, steps)
            if parent is None:
                continue
            if line and line[-1][1] == start and line[-1][2] == parent:
                line[-1] = (line[-1][0], end, parent)
            else:
                line.append((start, end, parent))
        if line:
            found[golden] = line
    return found


def _parent_at(
    t: int, spans: list[tuple[str, int, int]], steps: Mapping[str, list[tuple[int, RelationEvent]]]
) -> Any:
    best: RelationEvent | None = None
    for record, start, end in spans:
        if not start <= t < end:
            continue
        line = steps[record]
        i = bisect.bisect_right([s for s, _ in line], t) - 1
        if i >= 0:
            event = line[i][1]
            if best is None or (event.event_us, event.seq) > (best.event_us, best.seq):
                best = event
    return None if best is None else best.parent


def rolled_up(
    records: Mapping[str, list[Span]], parents: Mapping[Any, list[Span]], parent_type: pa.DataType
) -> pa.Table:
    """``record_id, golden_id, from_us, to_us``: each record's parent over time (through the
    golden ids it had), in the shape the batch engine reads mappings in."""
    out: dict[str, list[Any]] = {"record_id": [], "golden_id": [], "from_us": [], "to_us": []}
    for record, spans in records.items():
        for start, end, golden in spans:
            for p_start, p_end, parent in parents.get(golden, ()):
                low, high = max(start, p_start), min(end, p_end)
                if low < high:
                    out["record_id"].append(record)
                    out["golden_id"].append(parent)
                    out["from_us"].append(low)
                    out["to_us"].append(high)
    return pa.table(
        {
            "record_id": pa.array(out["record_id"], pa.string()),
            "golden_id": pa.array(out["golden_id"], parent_type),
            "from_us": pa.array(out["from_us"], pa.int64()),
            "to_us": pa.array(out["to_us"], pa.int64()),
        }
    )


def current_parents(parents: Mapping[Any, list[Span]]) -> dict[Any, Any]:
    """Each golden id's parent now (its span reaching the unbounded future)."""
    return {
        golden: line[-1][2]
        for golden, line in parents.items()
        if line and line[-1][1] >= UNBOUNDED_FUTURE
    }
