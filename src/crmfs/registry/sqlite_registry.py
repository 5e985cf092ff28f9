"""The embedded registry: a SQLite file holding every applied version of every definition."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from crmfs.definitions import Catalog, fingerprint
from crmfs.errors import RegistryError
from crmfs.registry.changes import (
    Applied,
    Change,
    ChangeKind,
    all_definitions,
    kind_of,
    plan_changes,
    specs,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
    value_fp TEXT NOT NULL, value_spec TEXT NOT NULL, applied_at INTEGER NOT NULL,
    PRIMARY KEY (kind, name, version)
) STRICT;
CREATE TABLE IF NOT EXISTS current (
    kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
    value_fp TEXT NOT NULL, meta_fp TEXT NOT NULL, meta_spec TEXT NOT NULL,
    PRIMARY KEY (kind, name)
) STRICT;
"""


class SqliteRegistry:
    """Versions are immutable rows; ``current`` points at the live one with its metadata."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=60000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open the registry at {path}: {exc}") from exc

    def applied(self) -> dict[tuple[str, str], Applied]:
        rows = self._db.execute(
            "SELECT kind, name, version, value_fp, meta_fp FROM current"
        ).fetchall()
        return {(r[0], r[1]): Applied(*r) for r in rows}

    def last_versions(self) -> dict[tuple[str, str], int]:
        """The highest version ever recorded per definition, removed ones included."""
        rows = self._db.execute(
            "SELECT kind, name, max(version) FROM versions GROUP BY kind, name"
        ).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def plan(self, catalog: Catalog) -> list[Change]:
        return plan_changes(catalog, self.applied(), self.last_versions())

    def apply(self, catalog: Catalog, now: int) -> list[Change]:
        """Record the definitions; serialized by SQLite's write lock."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            changes = plan_changes(catalog, self.applied(), self.last_versions())
            by_key = {(c.kind, c.name): c for c in changes}
            for definition in all_definitions(catalog):
                change = by_key.get((kind_of(definition), definition.name))
                if change is None:
                    continue
                value, meta = specs(definition)
                if change.change in (ChangeKind.ADD, ChangeKind.VALUES):
                    self._db.execute(
                        "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            change.kind,
                            change.name,
                            change.version,
                            fingerprint(value),
                            json.dumps(value),
                            now,
                        ),
                    )
                self._db.execute(
                    "INSERT OR REPLACE INTO current VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        change.kind,
                        change.name,
                        change.version,
                        fingerprint(value),
                        fingerprint(meta),
                        json.dumps(meta),
                    ),
                )
            for change in changes:
                if change.change is ChangeKind.REMOVE:
                    self._db.execute(
                        "DELETE FROM current WHERE kind = ? AND name = ?",
                        (change.kind, change.name),
                    )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return changes

    def version_of(self, kind: str, name: str) -> Applied | None:
        return self.applied().get((kind, name))

    def history(self, kind: str, name: str) -> list[tuple[int, str, int]]:
        """(version, value fingerprint, applied at) of every version."""
        return self._db.execute(
            "SELECT version, value_fp, applied_at FROM versions WHERE kind = ? AND name = ? ORDER BY version",
            (kind, name),
        ).fetchall()

    def close(self) -> None:
        self._db.close()
