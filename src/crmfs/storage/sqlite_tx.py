"""The write transaction every SQLite-backed store uses."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from crmfs.errors import StorageError


@contextmanager
def write_transaction(
    db: sqlite3.Connection, lock: threading.Lock | threading.RLock, what: str
) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under this process's ``lock``.

    The immediate begin takes SQLite's write lock at once, so two processes never both read
    under one version and then fail to commit. Any exception rolls the transaction back; a
    SQLite error becomes a ``StorageError`` saying that ``what`` failed.
    """
    with lock:
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"{what} failed: {exc}") from exc
