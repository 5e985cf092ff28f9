"""The identity graph in PostgreSQL: one schema per graph, writers taking turns (or one
writer), any number of readers.

- **Tables.** The graph's tables (:mod:`~crmfs.identity.graph_schema`) live in their own
  schema, created when missing under a transaction-scoped advisory lock, so processes
  opening a new graph at once are safe.
- **Writers take turns** (``take_turns=True``, the default): each write step takes a
  transaction-scoped advisory lock on the schema first, so steps of several processes
  run one after another; the graph re-reads the tables at the start of a step if another
  process wrote since (its generation moved), as with a SQLite graph. A step that waited
  ``wait_s`` for the lock gets an ``IdentityError`` naming the holder.
- **One writer** (``take_turns=False``): the writer holds a session-level advisory lock
  for as long as it is open. A second writer waits up to ``wait_s`` for it, then gets an
  ``IdentityError`` naming the holder. If the writer's connection drops, PostgreSQL
  releases the lock; the writer takes it again when it reconnects, and the graph re-reads
  the tables if another writer changed them in between.
- **Readers** (``read_only=True``) take no lock and see every committed step.
- **Batched writes.** A step's writes are kept until the step reads or ends, then sent in
  one pipeline (no round trip per statement); the step is one transaction.
- **Lost connections** are retried with backoff (:class:`~crmfs.storage.pg_connection.
  PgConnection`): reads, and a whole step whose COMMIT was not sent yet (the graph redoes
  it from what the tables hold). Otherwise ``BackendUnavailable``.

See the identity section of ``docs/postgres.md``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from crmfs.errors import IdentityError
from crmfs.identity.graph_schema import POSTGRES_SCHEMA, POSTGRES_TABLES
from crmfs.storage.pg_connection import PgConnection, check_schema, lock_key

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")
Params = Sequence[object]

_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
# Who holds a session-level advisory lock on a bigint key (pg_locks splits it in two).
_HOLDER = """
SELECT a.pid, a.application_name, a.client_addr, a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND ((l.classid::bigint << 32) | l.objid::bigint) = %s"""
_POLL_S = 0.1
_SERVER_KEEPALIVES = (
    "SELECT set_config('tcp_keepalives_idle', '10', false),"
    " set_config('tcp_keepalives_interval', '5', false),"
    " set_config('tcp_keepalives_count', '3', false)"
)


def _who(holder: tuple[Any, ...] | None) -> str:
    """A lock holder as ``_HOLDER`` finds it, for an error message."""
    if holder is None:
        return "another session, which has not let go of it within a second"
    pid, name, address, since = holder
    return (
        f"{name or 'a session without an application name'} (server pid {pid},"
        f" from {address or 'a local socket'}, connected since {since:%Y-%m-%d %H:%M:%S%z})"
    )


def writer_lock_key(schema: str) -> int:
    """The advisory lock the writer of the graph in ``schema`` holds (for its session, or
    for each step when writers take turns)."""
    return lock_key(f"crmfs identity writer {schema}")


def _tables_lock_key(schema: str) -> int:
    return lock_key(f"crmfs identity tables {schema}")


class PostgresGraphStore:
    """An identity graph's tables in the PostgreSQL schema ``schema``.

    ``dsn`` is a libpq connection string or URL; ``password`` (if given) is added to it.
    ``read_only`` opens a reader (no writer lock); a writer waits up to ``wait_s`` for the
    writer lock. Example::

        store = PostgresGraphStore("postgresql://crmfs@db:5432/features", "recsys_identity")
        graph = IdentityGraph(store, clock)
    """

    def __init__(
        self,
        dsn: str,
        schema: str = "crmfs_identity",
        *,
        read_only: bool = False,
        take_turns: bool = True,
        wait_s: float = 0.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        password: str | None = None,
        connect_timeout_s: int = 5,
    ) -> None:
        check_schema(schema, "identity")
        self.schema = schema
        self.read_only = read_only
        self.take_turns = take_turns
        self._wait_s = wait_s
        self._writer_key = writer_lock_key(schema)
        role = "reader" if read_only else "writer"
        self._connection = PgConnection(
            dsn,
            what=f"the PostgreSQL identity graph {schema!r}",
            setting="identity",
            application_name=f"crmfs identity {schema} {role} {socket.gethostname()}:{os.getpid()}",
            retries=retries,
            backoff_s=backoff_s,
            password=password,
            connect_timeout_s=connect_timeout_s,
            on_connect=self._prepare,
            unknown_outcome="whether the step was recorded is unknown: the graph reads"
            " what PostgreSQL holds on its next call",
        )
        self.where = f"{self._connection.where} schema {schema}"
        self._quoted = self._connection.quoted(schema)
        self._errors = self._connection.errors
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None  # the open step's or snapshot's
        self._in_step = False
        self._pending: list[tuple[str, list[Params]]] = []
        self._statements: dict[str, str] = {}
        self._connection.run(lambda conn: None, write=False)  # connect now: fail early

    # -- connecting ------------------------------------------------------------------------

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        """On each new connection: the tables exist, statements find them, and a writer
        holds the writer lock."""
        self._create_tables(conn)
        conn.execute("SELECT set_config('search_path', %s, false)", (self._quoted,))
        if not self.read_only:
            # The server notices a writer whose machine vanished in about 25 s (and frees
            # the writer lock), not after the system's default of hours.
            conn.execute(_SERVER_KEEPALIVES)
            if not self.take_turns:
                self._take_writer_lock(conn)

    def _create_tables(self, conn: psycopg.Connection[Any]) -> None:
        names = [f"{self._quoted}.{table}" for table in POSTGRES_TABLES]
        checks = ", ".join(["to_regclass(%s::text)"] * len(names))
        row = conn.execute(f"SELECT {checks}", names).fetchone()
        if row is not None and all(row):
            return
        # Two processes creating at once: the second waits, then finds the tables.
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_tables_lock_key(self.schema),))
            conn.execute(POSTGRES_SCHEMA.format(schema=self._quoted))

    def _take_writer_lock(self, conn: psycopg.Connection[Any]) -> None:
        deadline = time.monotonic() + self._wait_s
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._writer_key,)).fetchone()
            if row is not None and row[0]:
                return
            holder = conn.execute(_HOLDER, (self._writer_key,)).fetchone()
            if time.monotonic() >= deadline and (
                holder is not None or time.monotonic() >= deadline + _POLL_S * 10
            ):
                break
            # No holder: it let go between the two statements (a writer closing): try again.
            time.sleep(_POLL_S if holder is not None else _POLL_S / 10)
        waited = f" after waiting {self._wait_s:g} s" if self._wait_s else ""
        raise IdentityError(
            f"the identity graph {self.schema!r} at {self._connection.where} has a writer"
            f" already{waited}: {_who(holder)}. One process writes a graph at a time: stop"
            " that one, open this one read-only, or give it time to wait (identity.wait_s)"
        )

    def _take_step_lock(self, conn: psycopg.Connection[Any]) -> None:
        """Wait (up to ``wait_s``) for the other writers' steps: a lock the transaction
        holds until it ends."""
        timeout_ms = max(1, round(self._wait_s * 1000))
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{timeout_ms}ms",))
        try:
            with conn.transaction():  # a savepoint: the step's transaction outlives a timeout
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._writer_key,))
        except self._errors.errors.LockNotAvailable:
            holder = conn.execute(_HOLDER, (self._writer_key,)).fetchone()
            raise IdentityError(
                f"the identity graph {self.schema!r} at {self._connection.where}: another"
                f" process's write step held it for more than {self._wait_s:g} s:"
                f" {_who(holder)}. Wait longer (identity.wait_s) or see what that process is"
                " doing"
            ) from None
        conn.execute("SELECT set_config('lock_timeout', '0', true)")

    # -- the port --------------------------------------------------------------------------

    def rows(self, statement: str, params: Params = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._conn is not None:  # inside a step or snapshot: its transaction
                self._flush(self._conn)
                return self._conn.execute(self._pg(statement), params).fetchall()
            return self._connection.run(
                lambda conn: conn.execute(self._pg(statement), params).fetchall(), write=False
            )

    def write(self, statement: str, params: Params = ()) -> None:
        self.write_many(statement, [params])

    def write_many(self, statement: str, rows: Sequence[Params]) -> None:
        if not self._in_step:
            raise IdentityError("identity graph writes happen inside a step")
        if not rows:
            return
        if self._pending and self._pending[-1][0] == statement:
            self._pending[-1][1].extend(rows)
        else:
            self._pending.append((statement, list(rows)))

    def step(self, work: Callable[[], T]) -> T:
        def attempt(conn: psycopg.Connection[Any]) -> T:
            self._conn, self._in_step, self._pending = conn, True, []
            try:
                with conn.transaction():
                    if self.take_turns:
                        self._take_step_lock(conn)
                    result = work()
                    self._flush(conn)
                    self._connection.committing()
                return result
            finally:
                self._conn, self._in_step, self._pending = None, False, []

        with self._lock:
            return self._connection.run(attempt, write=True)

    def snapshot(self, work: Callable[[], T]) -> T:
        with self._lock:
            if self._conn is not None:
                return work()

            def attempt(conn: psycopg.Connection[Any]) -> T:
                self._conn = conn
                try:
                    with conn.transaction():
                        conn.execute(_SNAPSHOT)
                        return work()
                finally:
                    self._conn = None

            return self._connection.run(attempt, write=False)

    def close(self) -> None:
        """Close the connection; a writer lets go of the writer lock first (the server
        would too, but only once it notices the connection closed: a writer opened right
        after would find the lock still held)."""
        with self._lock:
            if not (self.read_only or self.take_turns):
                conn = self._connection.live()
                if conn is not None:
                    with contextlib.suppress(self._errors.Error):
                        conn.execute("SELECT pg_advisory_unlock(%s)", (self._writer_key,))
            self._connection.close()

    # -- helpers ---------------------------------------------------------------------------

    def _pg(self, statement: str) -> str:
        """A ``?`` statement in psycopg's parameter style."""
        found = self._statements.get(statement)
        if found is None:
            assert "%" not in statement, "graph statements take no literal %"
            found = self._statements[statement] = statement.replace("?", "%s")
        return found

    def _flush(self, conn: psycopg.Connection[Any]) -> None:
        """Send the step's pending writes in one pipeline, in order."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        with conn.pipeline(), conn.cursor() as cursor:
            for statement, rows in pending:
                if len(rows) == 1:
                    cursor.execute(self._pg(statement), rows[0])
                else:
                    cursor.executemany(self._pg(statement), rows)
