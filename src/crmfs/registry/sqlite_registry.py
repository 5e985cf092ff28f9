"""The embedded registry: a SQLite file holding every applied version of every definition."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from crmfs.errors import RegistryError
from crmfs.registry.sql_registry import Row, Session, SqlRegistry, Statements, T

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
CREATE TABLE IF NOT EXISTS applies (
    generation INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL, summary TEXT NOT NULL
) STRICT;
"""

_STATEMENTS = Statements(
    applied="SELECT kind, name, version, value_fp, meta_fp FROM current",
    last_versions="SELECT kind, name, max(version) FROM versions GROUP BY kind, name",
    history="SELECT version, value_fp, applied_at FROM versions WHERE kind = ? AND name = ? ORDER BY version",
    generation="SELECT coalesce(max(generation), 0) FROM applies",
    applies_after="SELECT generation, summary FROM applies WHERE generation > ? ORDER BY generation",
    insert_version="INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?)",
    upsert_current="INSERT OR REPLACE INTO current VALUES (?, ?, ?, ?, ?, ?)",
    delete_current="DELETE FROM current WHERE kind = ? AND name = ?",
    insert_apply="INSERT INTO applies VALUES (?, ?, ?)",
)


class _SqliteSession:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def rows(self, statement: str, params: Row = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(statement, params).fetchall()

    def run_many(self, statement: str, rows: Sequence[Row]) -> None:
        self._db.executemany(statement, rows)


class SqliteRegistry(SqlRegistry):
    """Versions are immutable rows; ``current`` points at the live one with its metadata.

    Writers are serialized by SQLite's write lock (``BEGIN IMMEDIATE``). A registry file
    written before the log of applies existed starts at generation 0.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(_STATEMENTS)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=60000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open the registry at {path}: {exc}") from exc
        self._session = _SqliteSession(self._db)

    def _snapshot(self, work: Callable[[Session], T]) -> T:
        return self._transaction("BEGIN", work)

    def _exclusive(self, work: Callable[[Session], T]) -> T:
        return self._transaction("BEGIN IMMEDIATE", work)

    def _transaction(self, begin: str, work: Callable[[Session], T]) -> T:
        try:
            self._db.execute(begin)
            result = work(self._session)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return result

    def close(self) -> None:
        self._db.close()
