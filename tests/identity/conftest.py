"""PostgreSQL for the identity graph's tests: a real server at 127.0.0.1:5432 (database
``test``, trust auth). Tests that need it fail, never skip, when it is not reachable; each
gets schemas of its own, dropped after it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.identity.graph_places import PG_DSN, Schemas


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_DSN}: {exc}\n"
            "the identity graph's PostgreSQL tests need it: start it with `make services`",
            pytrace=False,
        )
    return PG_DSN


@pytest.fixture
def pg_schemas(pg_dsn: str) -> Iterator[Schemas]:
    """Fresh schema names for a test; every schema it made is dropped afterwards."""
    made = Schemas(f"crmfs_graph_test-{secrets.token_hex(3)}")
    yield made
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for schema in made.names:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
