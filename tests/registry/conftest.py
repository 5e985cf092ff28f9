"""Registry fixtures: every conformance test runs on SQLite and on a real PostgreSQL.

PostgreSQL must be reachable at 127.0.0.1:5432 (database ``test``, trust auth): the
tests fail, never skip, when it is not. Each test gets its own schema, dropped after it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import PG_DSN, drop_schemas, require_postgres
from tests.registry.backends import Registries, RegistryAt


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    return require_postgres(PG_DSN, "the registry tests")


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A fresh schema name; the schema (if a test made it) is dropped afterwards."""
    schema = f"crmfs_test-{secrets.token_hex(4)}"  # the dash needs quoting
    yield schema
    drop_schemas(pg_dsn, [schema])


@pytest.fixture
def pg_registry_at(pg_dsn: str, pg_schema: str) -> RegistryAt:
    return RegistryAt("postgres", dsn=pg_dsn, schema=pg_schema)


@pytest.fixture(params=["sqlite", "postgres"])
def registry_at(request: pytest.FixtureRequest, tmp_path: Path) -> RegistryAt:
    """The place of a test's registry, once per backend."""
    if request.param == "sqlite":
        return RegistryAt("sqlite", path=tmp_path / "data" / "registry.db")
    at: RegistryAt = request.getfixturevalue("pg_registry_at")
    return at


@pytest.fixture
def registries(registry_at: RegistryAt) -> Iterator[Registries]:
    opened = Registries(registry_at)
    yield opened
    opened.close_all()


@pytest.fixture
def pg_registries(pg_registry_at: RegistryAt) -> Iterator[Registries]:
    opened = Registries(pg_registry_at)
    yield opened
    opened.close_all()
