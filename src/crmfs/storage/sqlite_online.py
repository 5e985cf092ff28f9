"""The embedded online store: one SQLite file in the project folder."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from crmfs.errors import StorageError
from crmfs.storage.ports import EntityKey, Watermark, WatermarkMoved

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    tbl TEXT NOT NULL, key ANY NOT NULL, value BLOB NOT NULL, PRIMARY KEY (tbl, key)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS watermark (
    name TEXT PRIMARY KEY, seq INTEGER NOT NULL, ingested_at INTEGER NOT NULL
) STRICT;
"""
_MAX_PARAMS = 900


class SqliteOnlineStore:
    """Online state in SQLite (WAL): durable, readable by other processes while written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # The online store is rebuilt from the event log after a crash (the watermark
            # says from where), so it need not fsync on every commit.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=60000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the online store at {path}: {exc}") from exc
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"online store write failed: {exc}") from exc

    def read(self, table: str, keys: Sequence[EntityKey]) -> list[bytes | None]:
        if len(keys) == 1:
            row = self._db.execute(
                "SELECT value FROM state WHERE tbl = ? AND key = ?", (table, keys[0])
            ).fetchone()
            return [None if row is None else row[0]]
        found: dict[EntityKey, bytes] = {}
        for start in range(0, len(keys), _MAX_PARAMS):
            chunk = list(keys[start : start + _MAX_PARAMS])
            marks = ",".join("?" * len(chunk))
            found.update(
                self._db.execute(
                    f"SELECT key, value FROM state WHERE tbl = ? AND key IN ({marks})",
                    (table, *chunk),
                ).fetchall()
            )
        return [found.get(key) for key in keys]

    def write(
        self,
        updates: Mapping[str, Mapping[EntityKey, bytes]],
        watermark: Watermark | None = None,
        expected: Watermark | None = None,
    ) -> None:
        with self._transaction() as db:
            if expected is not None:
                current = self.watermark()
                if current != expected:
                    raise WatermarkMoved(expected, current)
            for table, rows in updates.items():
                db.executemany(
                    "INSERT OR REPLACE INTO state (tbl, key, value) VALUES (?, ?, ?)",
                    ((table, key, value) for key, value in rows.items()),
                )
            if watermark is not None:
                _set_watermark(db, watermark)

    def watermark(self) -> Watermark:
        row = self._db.execute(
            "SELECT seq, ingested_at FROM watermark WHERE name = 'stream'"
        ).fetchone()
        return Watermark() if row is None else Watermark(row[0], row[1])

    def replace_table(
        self, table: str, rows: Mapping[EntityKey, bytes], expected: Watermark
    ) -> None:
        with self._transaction() as db:
            current = self.watermark()
            if current != expected:
                raise WatermarkMoved(expected, current)
            db.execute("DELETE FROM state WHERE tbl = ?", (table,))
            db.executemany(
                "INSERT INTO state (tbl, key, value) VALUES (?, ?, ?)",
                ((table, key, value) for key, value in rows.items()),
            )

    def drop_table(self, table: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM state WHERE tbl = ?", (table,))

    def tables(self) -> dict[str, int]:
        """Rows per table, for reports."""
        return dict(self._db.execute("SELECT tbl, count(*) FROM state GROUP BY tbl").fetchall())

    def close(self) -> None:
        self._db.close()


def _set_watermark(db: sqlite3.Connection, watermark: Watermark) -> None:
    db.execute(
        "INSERT OR REPLACE INTO watermark (name, seq, ingested_at) VALUES ('stream', ?, ?)",
        (watermark.seq, watermark.ingested_at),
    )
