"""The identity graph ``crmfs.yaml`` chooses (``identity: {type: ...}``), opened in one place.

``sqlite`` (the default) keeps the graph in ``identity.db`` in the data folder;
``postgres`` in a schema of a PostgreSQL database, shared by every process of a project:
writers take turns step by step (``writers: take_turns``, the default) or one process
writes (``writers: one``), any number of readers. The PostgreSQL adapter is imported only when chosen.

>>> graph = open_identity_graph({"type": "postgres", "dsn": "postgresql://crmfs@db/features",
...                              "password_env": "CRMFS_PG_PASSWORD"}, data_dir, clock)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from crmfs.errors import ConfigError
from crmfs.identity.graph import IdentityGraph
from crmfs.identity.graph_store import GraphStore, SqliteGraphStore

GRAPH_TYPES = ("sqlite", "postgres")
WRITER_MODES = ("take_turns", "one")
DEFAULT_STEP_WAIT_S = 60.0


def open_identity_graph(
    options: Mapping[str, Any],
    data_dir: Path,
    clock: Callable[[], int],
    *,
    read_only: bool = False,
) -> IdentityGraph:
    """The identity graph that ``options`` (``crmfs.yaml``'s ``identity`` mapping) names.

    ``read_only`` opens a reader: no writer lock is taken (PostgreSQL) and writes are
    refused; ``refresh()`` catches up with the writer's committed steps."""
    store = open_graph_store(options, data_dir, read_only=read_only)
    return IdentityGraph(
        store,
        clock,
        max_records_per_key=options.get("max_records_per_key"),
        names_must_agree=options.get("names_must_agree", True),
    )


def open_graph_store(
    options: Mapping[str, Any], data_dir: Path, *, read_only: bool = False
) -> GraphStore:
    """Where the configured graph keeps its tables."""
    kind = options.get("type", "sqlite")
    if kind == "sqlite":
        data_dir.mkdir(parents=True, exist_ok=True)
        return SqliteGraphStore(data_dir / "identity.db", read_only=read_only)
    if kind == "postgres":
        dsn = options.get("dsn")
        if not isinstance(dsn, str) or not dsn:
            raise ConfigError(
                "identity.dsn must be a PostgreSQL connection string for identity type"
                " 'postgres', e.g. postgresql://crmfs@db.internal:5432/features"
            )
        from crmfs.identity.graph_postgres import PostgresGraphStore

        writers = options.get("writers", "take_turns")
        if writers not in WRITER_MODES:
            raise ConfigError(
                f"identity.writers {writers!r} is unknown; valid: {', '.join(WRITER_MODES)}"
            )
        take_turns = writers == "take_turns"
        return PostgresGraphStore(
            dsn,
            options.get("schema", "crmfs_identity"),
            read_only=read_only,
            take_turns=take_turns,
            # Taking turns, a step waits for others' steps; one writer fails at once.
            wait_s=float(options.get("wait_s", DEFAULT_STEP_WAIT_S if take_turns else 0.0)),
            retries=int(options.get("retries", 3)),
            backoff_s=float(options.get("backoff_s", 0.2)),
            password=_password(options.get("password_env")),
            connect_timeout_s=int(options.get("timeout_s", 5)),
        )
    raise ConfigError(f"identity.type {kind!r} is unknown; valid types: {', '.join(GRAPH_TYPES)}")


def _password(variable: object) -> str | None:
    """The password in the environment variable ``identity.password_env`` names, if any."""
    if variable is None:
        return None
    password = os.environ.get(str(variable))
    if not password:
        raise ConfigError(
            f"crmfs.yaml identity.password_env names the environment variable {variable},"
            " which is not set (or empty): set it to the server's password, or remove"
            " password_env if the server needs none"
        )
    return password
