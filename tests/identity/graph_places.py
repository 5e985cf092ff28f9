"""Where a test's identity graph lives, for both backends; picklable, so worker processes
open the same graph."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crmfs.identity.graph import IdentityGraph
from crmfs.identity.graph_backends import open_identity_graph
from tests.postgres import PG_DSN


@dataclass(frozen=True)
class GraphAt:
    """A SQLite file in a folder, or a schema in a PostgreSQL database."""

    kind: str
    folder: Path = Path()
    schema: str = ""
    dsn: str = PG_DSN

    def options(self, **extra: Any) -> dict[str, Any]:
        """The ``identity`` mapping of a crmfs.yaml that names this place."""
        if self.kind == "sqlite":
            return {"type": "sqlite", **extra}
        return {"type": "postgres", "dsn": self.dsn, "schema": self.schema, **extra}

    def open(
        self, clock: Callable[[], int], read_only: bool = False, **extra: Any
    ) -> IdentityGraph:
        """A new graph on this place (``extra``: identity options; PostgreSQL retries
        quickly unless told otherwise)."""
        if self.kind == "postgres":
            extra.setdefault("backoff_s", 0.01)
        return open_identity_graph(self.options(**extra), self.folder, clock, read_only=read_only)


class Schemas:
    """PostgreSQL schema names for one test (the fixture drops them all afterwards)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.names: list[str] = []
        self._of_path: dict[Path, str] = {}

    def new(self) -> str:
        name = f"{self.prefix}-{len(self.names)}"
        self.names.append(name)
        return name

    def for_path(self, path: Path) -> str:
        """One schema per SQLite path a scenario names (the same path: the same schema)."""
        if path not in self._of_path:
            self._of_path[path] = self.new()
        return self._of_path[path]
