"""The write transaction every SQLite-backed store uses."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from crmfs.errors import StorageError


class WriteTransaction:
    """``BEGIN IMMEDIATE`` under this process's ``lock``, open until ``commit`` or
    ``rollback`` (which may come from later calls of the same thread).

    The immediate begin takes SQLite's write lock at once, so two processes never both read
    under one version and then fail to commit. A SQLite error becomes a ``StorageError``
    saying that ``what`` failed; a commit that fails is rolled back. Either end releases
    ``lock``.
    """

    def __init__(
        self, db: sqlite3.Connection, lock: threading.Lock | threading.RLock, what: str
    ) -> None:
        self.db = db
        self._lock = lock
        self._what = what
        lock.acquire()
        try:
            db.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            lock.release()
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from exc
            raise
        self.open = True

    def commit(self) -> None:
        self._end("COMMIT")

    def rollback(self) -> None:
        """Undo the transaction; nothing if it already ended."""
        if self.open:
            self._end("ROLLBACK")

    def failed(self, exc: BaseException) -> BaseException:
        """Roll back after ``exc`` was raised inside the transaction; returns what to raise
        (a SQLite error as a ``StorageError``)."""
        self.rollback()
        return self._error(exc)

    def _end(self, statement: str) -> None:
        if not self.open:
            raise StorageError(f"{self._what}: the transaction already ended")
        self.open = False
        try:
            self.db.execute(statement)
        except BaseException as exc:
            if statement == "COMMIT":
                with suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from exc
            raise
        finally:
            self._lock.release()

    def _error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, sqlite3.Error):
            return StorageError(f"{self._what} failed: {exc}")
        return exc


@contextmanager
def write_transaction(
    db: sqlite3.Connection, lock: threading.Lock | threading.RLock, what: str
) -> Iterator[sqlite3.Connection]:
    """A ``WriteTransaction`` around a block: committed at its end, rolled back if the block
    raises (a SQLite error raised as a ``StorageError`` saying that ``what`` failed)."""
    transaction = WriteTransaction(db, lock, what)
    try:
        yield db
    except BaseException as exc:
        error = transaction.failed(exc)
        if error is exc:
            raise
        raise error from exc
    transaction.commit()
