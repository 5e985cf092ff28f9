"""The identity step between validation and aggregation.

Sources that declare identifiers (``EventSource.identifiers``) have each event resolved to a
golden id by the identity graph before the log append: the event's normalized identifiers
form an **identity record** (one per distinct set of identifier values in a source), new
records are linked in the graph, and the event is stored with its record and golden id
(``IDENTITY_RECORD``, ``GOLDEN_ID``). Sources without identifiers pass through unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from crmfs.definitions import GOLDEN_ID, IDENTITY_RECORD, EventSource
from crmfs.identity.deterministic import IdentityRecord, Key
from crmfs.identity.graph import IdentityGraph
from crmfs.identity.normalize import normalize_values
from crmfs.storage.event_log import EVENT_TIME, Rejected

NO_STRONG_IDENTIFIER = "identifiers"


@dataclass
class Resolved:
    """The events with their identity resolved; those that could not be, rejected."""

    events: pa.Table
    event_ids: list[Any]
    rejected: list[Rejected] = field(default_factory=list)


class IdentityStep(Protocol):
    def resolve(
        self, source: EventSource, events: pa.Table, event_ids: list[Any], at: int
    ) -> Resolved:
        """The validated events of ``source``, ingested at ``at``, with identity resolved."""
        ...


class KeysAsGiven:
    """Use the entity keys events carry, unchanged (no identity service)."""

    def resolve(
        self, source: EventSource, events: pa.Table, event_ids: list[Any], at: int
    ) -> Resolved:
        return Resolved(events, event_ids)


def record_id_for(source: str, keys: frozenset[Key]) -> str:
    """The identity record of a source's events with these normalized identifiers."""
    text = json.dumps([source, sorted((k.value, v) for k, v in keys)], separators=(",", ":"))
    return "r" + hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def identifier_keys(
    source: EventSource, events: pa.Table, default_region: str
) -> list[frozenset[Key]]:
    """Each event's normalized identifiers (kind, value); identifiers that cannot serve
    (empty, an impossible phone number ...) are left out."""
    columns = [
        (kind, normalize_values(kind, events.column(name).to_pylist(), default_region))
        for name, kind in source.identifier_kinds.items()
    ]
    return [
        frozenset((kind, value) for kind, values in columns if (value := values[row]) is not None)
        for row in range(events.num_rows)
    ]


class GraphIdentity:
    """Resolves events through an ``IdentityGraph`` (one transaction per batch)."""

    def __init__(self, graph: IdentityGraph, default_region: str = "US") -> None:
        self.graph = graph
        self.default_region = default_region

    def resolve(
        self, source: EventSource, events: pa.Table, event_ids: list[Any], at: int
    ) -> Resolved:
        if not source.identifiers:
            return Resolved(events, event_ids)
        keys = identifier_keys(source, events, self.default_region)
        usable = [any(kind.is_strong for kind, _ in found) for found in keys]
        rejected = []
        if not all(usable):
            rejected = self._without_strong_key(source, events, usable)
            kept = pa.array([i for i, ok in enumerate(usable) if ok], pa.int64())
            events = events.take(kept)
            event_ids = [e for e, ok in zip(event_ids, usable, strict=True) if ok]
            keys = [k for k, ok in zip(keys, usable, strict=True) if ok]
        record_ids = [record_id_for(source.name, k) for k in keys]
        times = events.column(EVENT_TIME).to_pylist()
        first_event: dict[str, int] = {}
        records: dict[str, IdentityRecord] = {}
        for rid, found, time in zip(record_ids, keys, times, strict=True):
            if rid not in records:
                records[rid] = IdentityRecord(rid, at, found)
                first_event[rid] = time
            elif time < first_event[rid]:
                first_event[rid] = time
        self.graph.add_all(records.values(), at, first_event)
        golden_of = {rid: self.graph.golden_id(rid) for rid in records}
        resolved = events.append_column(IDENTITY_RECORD, pa.array(record_ids, pa.string()))
        resolved = resolved.append_column(
            GOLDEN_ID, pa.array([golden_of[rid] for rid in record_ids], pa.string())
        )
        return Resolved(resolved, event_ids, rejected)

    @staticmethod
    def _without_strong_key(
        source: EventSource, events: pa.Table, usable: Sequence[bool]
    ) -> list[Rejected]:
        strong = ", ".join(n for n, k in source.identifier_kinds.items() if k.is_strong)
        reason = f"{NO_STRONG_IDENTIFIER}: none of {strong} holds a usable value"
        positions = pa.array([i for i, ok in enumerate(usable) if not ok], pa.int64())
        bad = events.take(positions).drop_columns([EVENT_TIME]).to_pylist()
        return [
            Rejected(NO_STRONG_IDENTIFIER, reason, record, record.get(source.event_id))
            for record in bad
        ]
