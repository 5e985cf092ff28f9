"""PostgreSQL for the identity graph's tests: a real server at 127.0.0.1:5432 (database
``test``, trust auth). Tests that need it fail, never skip, when it is not reachable; each
gets schemas of its own, dropped after it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.identity.graph_places import Schemas
from tests.postgres import PG_DSN, drop_schemas, require_postgres


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    return require_postgres(PG_DSN, "the identity graph's PostgreSQL tests")


@pytest.fixture
def pg_schemas(pg_dsn: str) -> Iterator[Schemas]:
    """Fresh schema names for a test; every schema it made is dropped afterwards."""
    made = Schemas(f"crmfs_graph_test-{secrets.token_hex(3)}")
    yield made
    drop_schemas(pg_dsn, made.names)
