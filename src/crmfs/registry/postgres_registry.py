"""The PostgreSQL registry: one project's definitions shared by every process and user.

Its tables live in their own schema (``crmfs`` unless told), created when missing. Writers
take a transaction-scoped advisory lock on the schema, so concurrent applies run one after
the other; readers never wait for them. A connection that fails or drops is retried with
exponential backoff, a bounded number of times, then :class:`~crmfs.errors.BackendUnavailable`
says what was written. Every apply is one transaction: a drop part-way keeps nothing of it.
See ``docs/postgres.md``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from crmfs.errors import BackendUnavailable, ConfigError, MissingExtra, RegistryError, StorageError
from crmfs.registry.sql_registry import Row, Session, SqlRegistry, Statements, T

if TYPE_CHECKING:
    import psycopg

TABLES = ("versions", "current", "applies")
_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.versions (
    kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
    value_fp TEXT NOT NULL, value_spec JSONB NOT NULL, applied_at BIGINT NOT NULL,
    PRIMARY KEY (kind, name, version));
CREATE TABLE IF NOT EXISTS {schema}.current (
    kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
    value_fp TEXT NOT NULL, meta_fp TEXT NOT NULL, meta_spec JSONB NOT NULL,
    PRIMARY KEY (kind, name),
    FOREIGN KEY (kind, name, version) REFERENCES {schema}.versions);
CREATE TABLE IF NOT EXISTS {schema}.applies (
    generation BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL, summary TEXT NOT NULL);
"""
_STATEMENTS = {
    "applied": "SELECT kind, name, version, value_fp, meta_fp FROM {schema}.current",
    "last_versions": "SELECT kind, name, max(version) FROM {schema}.versions GROUP BY kind, name",
    "history": "SELECT version, value_fp, applied_at FROM {schema}.versions WHERE kind = %s AND name = %s ORDER BY version",
    "generation": "SELECT coalesce(max(generation), 0) FROM {schema}.applies",
    "applies_after": "SELECT generation, summary FROM {schema}.applies WHERE generation > %s ORDER BY generation",
    "insert_version": "INSERT INTO {schema}.versions VALUES (%s, %s, %s, %s, %s::jsonb, %s)",
    "upsert_current": """INSERT INTO {schema}.current VALUES (%s, %s, %s, %s, %s, %s::jsonb)
        ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version,
        value_fp = excluded.value_fp, meta_fp = excluded.meta_fp, meta_spec = excluded.meta_spec""",
    "delete_current": "DELETE FROM {schema}.current WHERE kind = %s AND name = %s",
    "insert_apply": "INSERT INTO {schema}.applies VALUES (%s, %s, %s)",
}
_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_LOCK = "SELECT pg_advisory_xact_lock(%s)"
_KEEPALIVES: dict[str, str | int] = {
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise MissingExtra("psycopg", "postgres") from exc
    return psycopg


def lock_key(schema: str) -> int:
    """The advisory lock a registry's writers take: one per schema (per database)."""
    digest = hashlib.blake2b(f"crmfs registry {schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _PostgresSession:
    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor

    def rows(self, statement: str, params: Row = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(statement, params)
        return self._cursor.fetchall()

    def run_many(self, statement: str, rows: Sequence[Row]) -> None:
        if rows:
            self._cursor.executemany(statement, rows)


class PostgresRegistry(SqlRegistry):
    """Applied definitions in a PostgreSQL schema, safe for many processes at once.

    ``dsn`` is a libpq connection string or URL; ``password`` (if given) is added to it.
    Connection failures are tried ``retries`` more times, waiting ``backoff_s``, then twice
    as long each time; other errors are never retried. Example::

        registry = PostgresRegistry("postgresql://crmfs@db:5432/features", schema="recsys")
        generation = registry.generation()
        registry.apply(catalog, now, expected_generation=generation)
    """

    def __init__(
        self,
        dsn: str,
        schema: str = "crmfs",
        retries: int = 3,
        backoff_s: float = 0.2,
        *,
        password: str | None = None,
        connect_timeout_s: int = 5,
    ) -> None:
        self._pg = _psycopg()
        if not schema or len(schema.encode()) > 63:
            raise ConfigError(f"registry schema {schema!r}: give a name of 1 to 63 bytes")
        if retries < 0 or backoff_s < 0:
            raise ConfigError("registry retries and backoff_s must not be negative")
        try:
            parts = self._pg.conninfo.conninfo_to_dict(dsn)
        except self._pg.ProgrammingError as exc:
            raise ConfigError(f"registry dsn is not a valid connection string: {exc}") from exc
        # Where, for messages: never the password.
        self.where = (
            f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"
        )
        # A server that vanishes without closing the connection is noticed in about 25 s
        # (TCP keepalives), not hours, unless the dsn says otherwise.
        extra = {k: v for k, v in _KEEPALIVES.items() if k not in parts}
        if password is not None:
            extra["password"] = password
        self._conninfo: str = self._pg.conninfo.make_conninfo(
            dsn,
            connect_timeout=max(2, connect_timeout_s),
            application_name=f"crmfs registry {schema}"[:63],
            **extra,
        )
        self.schema = schema
        self._quoted_schema: str = self._pg.sql.Identifier(schema).as_string()
        self._retries = retries
        self._backoff_s = backoff_s
        self._lock_key = lock_key(schema)
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        self._committing = False  # set once an apply's work is done and COMMIT is sent
        super().__init__(Statements(**{k: self._in_schema(v) for k, v in _STATEMENTS.items()}))
        self._retrying(self._create_tables, write=True)

    def _in_schema(self, statement: str) -> str:
        """``statement`` with ``{schema}`` replaced by the schema's quoted name."""
        return statement.format(schema=self._quoted_schema)

    def _create_tables(self, conn: psycopg.Connection[Any]) -> None:
        names = [f"{self._quoted_schema}.{table}" for table in TABLES]
        found = conn.execute(
            "SELECT to_regclass(%s::text), to_regclass(%s::text), to_regclass(%s::text)", names
        )
        row = found.fetchone()
        if row is not None and all(row):
            return
        # Two processes creating at once: the second waits, then finds the tables.
        with conn.transaction():
            conn.execute(_LOCK, (self._lock_key,))
            conn.execute(self._in_schema(_DDL))

    def _snapshot(self, work: Callable[[Session], T]) -> T:
        def attempt(conn: psycopg.Connection[Any]) -> T:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.execute(_SNAPSHOT)
                return work(_PostgresSession(cursor))

        return self._retrying(attempt, write=False)

    def _exclusive(self, work: Callable[[Session], T]) -> T:
        def attempt(conn: psycopg.Connection[Any]) -> T:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.execute(_LOCK, (self._lock_key,))
                result = work(_PostgresSession(cursor))
                self._committing = True
            return result

        return self._retrying(attempt, write=True)

    def _retrying(self, attempt: Callable[[psycopg.Connection[Any]], T], write: bool) -> T:
        """Run ``attempt`` on a live connection; a lost connection is retried with backoff."""
        if self._closed:
            raise RegistryError("the PostgreSQL registry is closed")
        started = time.monotonic()
        lost: Exception | None = None
        for number in range(self._retries + 1):
            if number:
                time.sleep(self._backoff_s * 2 ** (number - 1))
            self._committing = False
            try:
                return attempt(self._connection())
            except self._pg.OperationalError as exc:
                if not self._connection_lost():
                    raise StorageError(f"the PostgreSQL registry at {self.where}: {exc}") from exc
                self._forget_connection()
                if write and self._committing:
                    raise BackendUnavailable(
                        f"the PostgreSQL registry at {self.where} dropped the connection while"
                        f" committing ({_first_line(exc)}); whether the apply was recorded is"
                        " unknown: run `crmfs plan` when PostgreSQL is back to see"
                    ) from exc
                lost = exc
            except self._pg.Error as exc:
                raise StorageError(f"the PostgreSQL registry at {self.where}: {exc}") from exc
        attempts = self._retries + 1
        written = "nothing was written: " if write else ""
        raise BackendUnavailable(
            f"the PostgreSQL registry at {self.where} is unavailable ({_first_line(lost)};"
            f" {attempts} attempt{'s' if attempts > 1 else ''} over"
            f" {time.monotonic() - started:.1f} s); {written}retry when it is back"
        ) from lost

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            self._conn = self._pg.connect(self._conninfo, autocommit=True)
        return self._conn

    def _connection_lost(self) -> bool:
        """After an OperationalError: is it the connection (retry) or the statement (not)?"""
        return self._conn is None or self._conn.closed or self._conn.broken

    def _forget_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._closed = True
        self._forget_connection()


def _first_line(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else "no reply"
