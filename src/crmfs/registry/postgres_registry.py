"""The PostgreSQL registry: one project's definitions shared by every process and user.

Its tables live in their own schema (``crmfs`` unless told), created when missing. Writers
take a transaction-scoped advisory lock on the schema, so concurrent applies run one after
the other; readers never wait for them. A connection that fails or drops is retried with
exponential backoff, a bounded number of times, then :class:`~crmfs.errors.BackendUnavailable`
says what was written. Every apply is one transaction: a drop part-way keeps nothing of it.
See ``docs/postgres.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from crmfs.errors import RegistryError
from crmfs.registry.sql_registry import Row, Session, SqlRegistry, Statements, T
from crmfs.storage import pg_connection
from crmfs.storage.pg_connection import PgConnection, check_schema

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


def lock_key(schema: str) -> int:
    """The advisory lock a registry's writers take: one per schema (per database)."""
    return pg_connection.lock_key(f"crmfs registry {schema}")


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
        check_schema(schema, "registry")
        self._connection = PgConnection(
            dsn,
            what="the PostgreSQL registry",
            setting="registry",
            application_name=f"crmfs registry {schema}",
            retries=retries,
            backoff_s=backoff_s,
            password=password,
            connect_timeout_s=connect_timeout_s,
            unknown_outcome="whether the apply was recorded is unknown: run `crmfs plan`"
            " when PostgreSQL is back to see",
            closed_error=RegistryError,
        )
        self.where = self._connection.where
        self.schema = schema
        self._quoted_schema = self._connection.quoted(schema)
        self._lock_key = lock_key(schema)
        super().__init__(Statements(**{k: self._in_schema(v) for k, v in _STATEMENTS.items()}))
        self._connection.run(self._create_tables, write=True)

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

        return self._connection.run(attempt, write=False)

    def _exclusive(self, work: Callable[[Session], T]) -> T:
        def attempt(conn: psycopg.Connection[Any]) -> T:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.execute(_LOCK, (self._lock_key,))
                result = work(_PostgresSession(cursor))
                self._connection.committing()
            return result

        return self._connection.run(attempt, write=True)

    def close(self) -> None:
        self._connection.close()
