"""Golden ids from any identifier: lookups for serving and training sets.

An entity row may name a person by golden id or by any identifier a source declares (an
email, a phone, a CRM id ...). ``IdentifierLookup`` turns such values into golden ids, now
(serving) or as of each row's time on a mapping's time axis (training sets), by the records
that carry the identifier. An identifier that no record carries, or that is shared by
several people (``IdentityGraph.shared_keys``), names no one: its rows get no golden id.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from crmfs.definitions import EventSource, IdentifierKind
from crmfs.identity.graph import IdentityGraph
from crmfs.identity.normalize import normalize


def identifier_kind(name: str, sources: Sequence[EventSource]) -> IdentifierKind | None:
    """The kind an entity row's column names: a kind (``email``) or a source's identifier
    field (``contact_id``); None if it names neither."""
    try:
        return IdentifierKind(name)
    except ValueError:
        pass
    for source in sources:
        kind = source.identifier_kinds.get(name)
        if kind is not None:
            return kind
    return None


@dataclass
class IdentifierLookup:
    graph: IdentityGraph
    default_region: str = "US"

    def record_of(self, kind: IdentifierKind, value: object) -> str | None:
        """The record an identifier value stands for (the first of its records: they are
        one cluster unless it is shared, and a shared identifier stands for no one)."""
        normalized = normalize(kind, value, self.default_region)
        return None if normalized is None else self.graph.record_of_key((kind, normalized))

    def golden_ids_now(self, kind: IdentifierKind, values: Sequence[object]) -> list[str | None]:
        found = []
        for value in values:
            record = self.record_of(kind, value)
            found.append(None if record is None else self.graph.golden_id(record))
        return found

    def golden_ids_at(
        self,
        kind: IdentifierKind,
        values: Sequence[object],
        times: Sequence[int],
        intervals: pa.Table,
    ) -> list[str | None]:
        """Each value's golden id at its time, by ``intervals`` (``IdentityGraph.intervals``)."""
        records = [self.record_of(kind, value) for value in values]
        timeline = _timelines(intervals, {r for r in records if r is not None})
        found: list[str | None] = []
        for record, time in zip(records, times, strict=True):
            line = timeline.get(record) if record is not None else None
            if line is None:
                found.append(None)
                continue
            starts, ends, golden = line
            i = bisect.bisect_right(starts, time) - 1
            found.append(golden[i] if i >= 0 and time < ends[i] else None)
        return found


Timeline = tuple[list[int], list[int], list[str]]


def _timelines(intervals: pa.Table, wanted: set[str]) -> Mapping[str, Timeline]:
    lines: dict[str, list[tuple[int, int, str]]] = {}
    columns = [intervals.column(n).to_pylist() for n in ("record_id", "from_us", "to_us")]
    golden = intervals.column("golden_id").to_pylist()
    for record, start, end, gid in zip(*columns, golden, strict=True):
        if record in wanted:
            lines.setdefault(record, []).append((start, end, gid))
    timelines: dict[str, Timeline] = {}
    for record, spans in lines.items():
        spans.sort()
        timelines[record] = (
            [s for s, _, _ in spans],
            [e for _, e, _ in spans],
            [g for _, _, g in spans],
        )
    return timelines
