"""What every SQL registry does, written once.

A registry keeps every applied version of every definition (``versions``, immutable rows),
the live one per definition with its metadata (``current``) and one row per ``apply`` that
changed something (``applies``). The number of those applies is the registry's
*generation*: a plan made at generation N may be applied only while the registry is still
at N, so a stale writer is refused instead of silently undoing another apply.

The backends (:mod:`~crmfs.registry.sqlite_registry`,
:mod:`~crmfs.registry.postgres_registry`) differ only in their SQL dialect and in how they
open a transaction; they give a :class:`Statements` and the two transaction methods.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from crmfs.definitions import Catalog, fingerprint
from crmfs.errors import RegistryConflict
from crmfs.registry.changes import (
    Applied,
    Change,
    ChangeKind,
    all_definitions,
    kind_of,
    plan_changes,
    specs,
)

T = TypeVar("T")
Row = Sequence[object]


class Session(Protocol):
    """One connection inside an open transaction, in its backend's parameter style."""

    def rows(self, statement: str, params: Row = ()) -> list[tuple[Any, ...]]:
        """Run a query and return all its rows."""
        ...

    def run_many(self, statement: str, rows: Sequence[Row]) -> None:
        """Run a statement once per row of parameters."""
        ...


@dataclass(frozen=True)
class Statements:
    """The registry's SQL in one backend's dialect (parameters in the order given)."""

    applied: str  # -> kind, name, version, value_fp, meta_fp of every live definition
    last_versions: str  # -> kind, name, highest version ever recorded
    history: str  # (kind, name) -> version, value_fp, applied_at, by version
    generation: str  # -> the number of applies that changed something
    applies_after: str  # (generation) -> generation, summary of every later apply
    insert_version: str  # (kind, name, version, value_fp, value_spec json, applied_at)
    upsert_current: str  # (kind, name, version, value_fp, meta_fp, meta_spec json)
    delete_current: str  # (kind, name)
    insert_apply: str  # (generation, applied_at, summary)


@dataclass(frozen=True)
class Writes:
    """The rows one ``apply`` writes, whatever the backend."""

    versions: list[Row]
    current: list[Row]
    removed: list[Row]
    summary: str


def writes_for(catalog: Catalog, changes: list[Change], now: int) -> Writes:
    """The rows that record ``changes`` (planned from ``catalog``) at time ``now``."""
    by_key = {(c.kind, c.name): c for c in changes}
    versions: list[Row] = []
    current: list[Row] = []
    for definition in all_definitions(catalog):
        change = by_key.get((kind_of(definition), definition.name))
        if change is None:
            continue
        value, meta = specs(definition)
        value_fp = fingerprint(value)
        if change.change in (ChangeKind.ADD, ChangeKind.VALUES):
            versions.append(
                (change.kind, change.name, change.version, value_fp, json.dumps(value), now)
            )
        current.append(
            (
                change.kind,
                change.name,
                change.version,
                value_fp,
                fingerprint(meta),
                json.dumps(meta),
            )
        )
    removed: list[Row] = [(c.kind, c.name) for c in changes if c.change is ChangeKind.REMOVE]
    return Writes(versions, current, removed, describe(changes))


def describe(changes: list[Change]) -> str:
    """One line for the log of applies: ``FeatureView 'activity' values (v1 → v2), ...``."""
    return ", ".join(f"{c.kind} {c.name!r} {c.change} ({c.detail})" for c in changes)


class SqlRegistry(ABC):
    """Applied definitions, their versions and the registry's generation.

    Subclasses open the transactions: :meth:`_snapshot` runs its work on one consistent
    snapshot, :meth:`_exclusive` in one transaction that is serialized against every other
    writer of the same registry and committed only if the work returns.
    """

    def __init__(self, statements: Statements) -> None:
        self._sql = statements
        # One connection per registry: threads take turns with it.
        self._turn = threading.Lock()

    @abstractmethod
    def _snapshot(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` on one consistent snapshot of the registry."""

    @abstractmethod
    def _exclusive(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one serialized transaction; nothing is kept if it raises."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def _read(self, work: Callable[[Session], T]) -> T:
        with self._turn:
            return self._snapshot(work)

    def _write(self, work: Callable[[Session], T]) -> T:
        with self._turn:
            return self._exclusive(work)

    def applied(self) -> dict[tuple[str, str], Applied]:
        """The live version of every applied definition, by (kind, name)."""
        return self._read(self._applied)

    def last_versions(self) -> dict[tuple[str, str], int]:
        """The highest version ever recorded per definition, removed ones included."""
        return self._read(self._last_versions)

    def generation(self) -> int:
        """How many applies changed the registry: read it before ``plan`` to apply safely."""
        return self._read(self._generation)

    def plan(self, catalog: Catalog) -> list[Change]:
        """What applying ``catalog`` would change (a dry run)."""
        return self._read(lambda s: self._plan(s, catalog))

    def apply(
        self, catalog: Catalog, now: int, expected_generation: int | None = None
    ) -> list[Change]:
        """Record the definitions of ``catalog`` at ``now`` (UTC microseconds), atomically.

        Concurrent applies are serialized; each plans against what the one before it left.
        With ``expected_generation`` (the :meth:`generation` read before planning), an apply
        that another one overtook raises :class:`~crmfs.errors.RegistryConflict` and writes
        nothing::

            generation = registry.generation()
            changes = registry.plan(catalog)   # shown to a person
            registry.apply(catalog, now, expected_generation=generation)
        """
        return self._write(lambda s: self._apply(s, catalog, now, expected_generation))

    def version_of(self, kind: str, name: str) -> Applied | None:
        """The live version of one definition, or None if it is not applied."""
        return self.applied().get((kind, name))

    def history(self, kind: str, name: str) -> list[tuple[int, str, int]]:
        """(version, value fingerprint, applied at) of every version."""
        rows = self._read(lambda s: s.rows(self._sql.history, (kind, name)))
        return [(int(v), str(fp), int(at)) for v, fp, at in rows]

    def _applied(self, session: Session) -> dict[tuple[str, str], Applied]:
        rows = session.rows(self._sql.applied)
        return {(r[0], r[1]): Applied(*r) for r in rows}

    def _last_versions(self, session: Session) -> dict[tuple[str, str], int]:
        return {(r[0], r[1]): int(r[2]) for r in session.rows(self._sql.last_versions)}

    def _generation(self, session: Session) -> int:
        return int(session.rows(self._sql.generation)[0][0])

    def _plan(self, session: Session, catalog: Catalog) -> list[Change]:
        return plan_changes(catalog, self._applied(session), self._last_versions(session))

    def _apply(
        self, session: Session, catalog: Catalog, now: int, expected_generation: int | None
    ) -> list[Change]:
        generation = self._generation(session)
        if expected_generation is not None and expected_generation != generation:
            later = session.rows(self._sql.applies_after, (expected_generation,))
            raise RegistryConflict(
                expected_generation, generation, [f"generation {g}: {s}" for g, s in later]
            )
        changes = self._plan(session, catalog)
        if not changes:
            return changes
        writes = writes_for(catalog, changes, now)
        session.run_many(self._sql.insert_version, writes.versions)
        session.run_many(self._sql.upsert_current, writes.current)
        session.run_many(self._sql.delete_current, writes.removed)
        session.run_many(self._sql.insert_apply, [(generation + 1, now, writes.summary)])
        return changes
