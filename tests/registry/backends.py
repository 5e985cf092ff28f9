"""Where a test's registry lives, for both backends; picklable, so worker processes open it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crmfs.registry.postgres_registry import PostgresRegistry
from crmfs.registry.sql_registry import SqlRegistry
from crmfs.registry.sqlite_registry import SqliteRegistry
from tests.postgres import PG_DSN


@dataclass(frozen=True)
class RegistryAt:
    """A SQLite file, or a schema in a PostgreSQL database."""

    kind: str
    path: Path | None = None
    dsn: str = PG_DSN
    schema: str = ""

    def open(self, **options: Any) -> SqlRegistry:
        """A new registry on this place (PostgreSQL: ``options`` go to the constructor)."""
        if self.kind == "sqlite":
            assert self.path is not None
            return SqliteRegistry(self.path)
        options.setdefault("backoff_s", 0.01)
        return PostgresRegistry(self.dsn, self.schema, **options)


class Registries:
    """Opens registries at one place and closes them all when the test ends."""

    def __init__(self, at: RegistryAt) -> None:
        self.at = at
        self._opened: list[SqlRegistry] = []

    def open(self, **options: Any) -> SqlRegistry:
        registry = self.at.open(**options)
        self._opened.append(registry)
        return registry

    def close_all(self) -> None:
        for registry in self._opened:
            registry.close()
