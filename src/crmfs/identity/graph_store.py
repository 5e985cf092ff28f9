"""Where an identity graph keeps its tables: the port, and the embedded SQLite adapter.

``IdentityGraph`` holds the logic (linking, the probabilistic layer, the history) and runs
the statements of :mod:`~crmfs.identity.graph_schema` through a ``GraphStore``; a store
runs them on one backend and owns its transactions, locking and retries. The PostgreSQL
adapter is :class:`~crmfs.identity.graph_postgres.PostgresGraphStore`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from crmfs.errors import StorageError
from crmfs.identity.graph_schema import SCHEMA, add_new_columns
from crmfs.storage.sqlite_tx import write_transaction

T = TypeVar("T")
Params = Sequence[object]


class GraphStore(Protocol):
    """The tables of one identity graph, on one backend.

    Statements use ``?`` parameters. ``step`` runs a write step in one transaction,
    serialized against every other writer of the graph; ``write``/``write_many`` inside it
    may be deferred and sent together (before the next ``rows`` of the step, at the latest
    at its end). A step is either kept whole or not at all; a store may run a step's work
    again after a lost connection (the work must start from what the tables hold).
    """

    where: str  # for messages: a file, or a server and schema (never a password)
    read_only: bool  # opened to read: ``step`` is refused by the graph

    def rows(self, statement: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Run a query and return its rows (inside a step: in the step's transaction)."""
        ...

    def write(self, statement: str, params: Params = ()) -> None:
        """Run a statement inside the current step."""
        ...

    def write_many(self, statement: str, rows: Sequence[Params]) -> None:
        """Run a statement once per row of parameters inside the current step."""
        ...

    def step(self, work: Callable[[], T]) -> T:
        """Run ``work`` in one write transaction, committed if it returns."""
        ...

    def snapshot(self, work: Callable[[], T]) -> T:
        """Run ``work``'s reads on one consistent state of the tables."""
        ...

    def close(self) -> None:
        """Release the connection (and, for a writer, the graph)."""
        ...


class SqliteGraphStore:
    """The graph in one SQLite file (``identity.db`` in the project's data folder).

    Writers are serialized by SQLite's write lock (``BEGIN IMMEDIATE``); one process
    writes a graph at a time (the graph's memory is its linker). Nothing is retried: the
    file is local.
    """

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._in_step = False
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            add_new_columns(self._db)
        except sqlite3.Error as exc:
            raise StorageError(f"identity graph {self.path}: {exc}") from exc

    def rows(self, statement: str, params: Params = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(statement, params).fetchall()
            except sqlite3.Error as exc:
                if self._in_step:
                    raise  # the step's transaction reports it
                raise StorageError(f"identity graph {self.path}: {exc}") from exc

    def write(self, statement: str, params: Params = ()) -> None:
        self._db.execute(statement, params)

    def write_many(self, statement: str, rows: Sequence[Params]) -> None:
        self._db.executemany(statement, rows)

    def step(self, work: Callable[[], T]) -> T:
        with (
            self._lock,
            write_transaction(self._db, self._lock, f"identity graph {self.path}"),
        ):
            self._in_step = True
            try:
                return work()
            finally:
                self._in_step = False

    def snapshot(self, work: Callable[[], T]) -> T:
        with self._lock:
            if self._in_step or self._db.in_transaction:
                return work()
            self._db.execute("BEGIN")
            try:
                return work()
            finally:
                self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
