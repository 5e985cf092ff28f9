"""The real PostgreSQL the tests use (127.0.0.1:5432, database ``test``, trust auth): a
check that fails, never skips, when it is not reachable, and the dropping of test schemas."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
import pytest
from psycopg import sql

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def require_postgres(dsn: str, who: str) -> str:
    """``dsn``, once it answers; else the test fails saying ``who`` needs it and how to
    start it."""
    try:
        psycopg.connect(dsn, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {dsn}: {exc}\n"
            f"{who} need it: start it with `make services`",
            pytrace=False,
        )
    return dsn


def drop_schemas(dsn: str, schemas: Iterable[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
