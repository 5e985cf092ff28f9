"""The write transaction shared by the SQLite stores: every end rolls back or commits, and
lets go of the process lock."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from crmfs.errors import StorageError
from crmfs.storage.sqlite_tx import WriteTransaction, write_transaction


class _CommitFailsOnce:
    """A real connection whose next ``COMMIT`` fails, as a full disk would make it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.fail = True

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT" and self.fail:
            self.fail = False
            raise sqlite3.OperationalError("disk I/O error")
        return self.db.execute(sql, *args)


def _db(tmp_path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    db.execute("CREATE TABLE t (x INTEGER)")
    return db


def _rows(db: sqlite3.Connection) -> int:
    count: int = db.execute("SELECT count(*) FROM t").fetchone()[0]
    return count


def _write(db: sqlite3.Connection, lock: threading.Lock, *statements: str) -> None:
    with write_transaction(db, lock, "test write") as tx:
        for statement in statements:
            tx.execute(statement)


def test_a_failed_commit_is_rolled_back_and_frees_the_lock(tmp_path: Path) -> None:
    db = _db(tmp_path)
    lock = threading.Lock()
    failing = cast(sqlite3.Connection, _CommitFailsOnce(db))
    with pytest.raises(StorageError, match="test write failed: disk I/O error"):
        _write(failing, lock, "INSERT INTO t VALUES (1)")
    assert not db.in_transaction
    assert _rows(db) == 0
    assert not lock.locked()
    _write(failing, lock, "INSERT INTO t VALUES (2)")  # usable again
    assert _rows(db) == 1
    assert not lock.locked()


def _insert_then_fail(db: sqlite3.Connection, lock: threading.Lock) -> None:
    with write_transaction(db, lock, "test write") as tx:
        tx.execute("INSERT INTO t VALUES (1)")
        raise KeyError("not SQLite's")


def test_errors_in_the_block_roll_back_sqlite_ones_named(tmp_path: Path) -> None:
    db = _db(tmp_path)
    lock = threading.Lock()
    with pytest.raises(KeyError):
        _insert_then_fail(db, lock)
    with pytest.raises(StorageError, match="test write failed: no such table"):
        _write(db, lock, "INSERT INTO t VALUES (1)", "INSERT INTO missing VALUES (1)")
    assert _rows(db) == 0
    assert not db.in_transaction
    assert not lock.locked()


def test_a_transaction_spans_calls_until_it_ends_once(tmp_path: Path) -> None:
    db = _db(tmp_path)
    lock = threading.Lock()
    transaction = WriteTransaction(db, lock, "test write")
    transaction.db.execute("INSERT INTO t VALUES (1)")
    assert lock.locked()
    transaction.commit()
    assert _rows(db) == 1
    assert not lock.locked()
    transaction.rollback()  # already ended: nothing
    with pytest.raises(StorageError, match="already ended"):
        transaction.commit()
