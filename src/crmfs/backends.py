"""The online store, the registry and the batch engine that ``crmfs.yaml`` chooses, opened
in one place.

The embedded defaults (SQLite, DuckDB) need nothing; Redis, PostgreSQL and Spark adapters are
imported only when chosen, and a missing client library raises ``MissingExtra`` naming the extra to install.
Passwords come from the environment variables that ``password_env`` names, read when the
backend is opened, never from the file.

>>> store = open_online_store(ProjectConfig.load(Path("my_project")))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crmfs.config import (
    OnlineStoreConfig,
    PostgresRegistryConfig,
    ProjectConfig,
    RedisOnlineStoreConfig,
    SqliteOnlineStoreConfig,
)
from crmfs.errors import ConfigError
from crmfs.runtimes.batch.port import BatchEngine
from crmfs.storage.event_log import EventLog
from crmfs.storage.ports import OnlineStore
from crmfs.transform.plan import ViewPlan

if TYPE_CHECKING:
    from crmfs.registry.sql_registry import SqlRegistry

KeyTtl = Callable[[str], int | None]
# Added to the key TTL of an entity's online state: events dated a little ahead of the clock
# that sets Redis's TTLs (ingestion time) still count for their windows when read.
KEY_TTL_MARGIN_S = 86_400


def open_batch_engine(options: Mapping[str, Any], log: EventLog) -> BatchEngine:
    """The batch engine ``batch_engine:`` chooses: DuckDB (embedded) or Spark."""
    if options.get("type", "duckdb") == "spark":
        from crmfs.runtimes.batch.spark_engine import open_spark_engine

        return open_spark_engine(options, log)
    from crmfs.runtimes.batch.engine import DuckDBEngine

    return DuckDBEngine(
        log, threads=options.get("threads"), memory_limit=options.get("memory_limit")
    )


def open_online_store(config: ProjectConfig, key_ttl: KeyTtl | None = None) -> OnlineStore:
    """The project's online store; ``key_ttl`` gives a table's key TTL in seconds where
    the store expires keys (Redis), None for no TTL."""
    return _open_online(config.online_store, config.data_dir, config.project, key_ttl)


def online_store_opener(config: ProjectConfig) -> Callable[[], OnlineStore]:
    """Opens the project's online store again, in another process (a fold worker, which
    only reads): a picklable callable."""
    return partial(_open_online, config.online_store, config.data_dir, config.project, None)


def _open_online(
    settings: OnlineStoreConfig, data_dir: Path, project: str, key_ttl: KeyTtl | None
) -> OnlineStore:
    if isinstance(settings, SqliteOnlineStoreConfig):
        from crmfs.storage.sqlite_online import SqliteOnlineStore

        return SqliteOnlineStore(data_dir / "online.db")
    return _redis_online(settings, project, key_ttl)


def _redis_online(
    settings: RedisOnlineStoreConfig, project: str, key_ttl: KeyTtl | None
) -> OnlineStore:
    from crmfs.storage.redis_connection import RedisSettings
    from crmfs.storage.redis_online import RedisOnlineStore

    connection = RedisSettings(
        url=settings.url,
        password=_password("online_store", settings.password_env),
        retries=settings.retries,
        backoff_s=settings.backoff_s,
        timeout_s=settings.timeout_s,
    )
    return RedisOnlineStore(
        connection,
        settings.key_prefix or project,
        key_ttl=key_ttl,
        write_lease_s=settings.write_lease_s,
    )


def open_registry(config: ProjectConfig) -> SqlRegistry:
    """The project's registry."""
    settings = config.registry
    if isinstance(settings, PostgresRegistryConfig):
        from crmfs.registry.postgres_registry import PostgresRegistry

        return PostgresRegistry(
            settings.dsn,
            settings.schema,
            settings.retries,
            settings.backoff_s,
            password=_password("registry", settings.password_env),
            connect_timeout_s=settings.timeout_s,
        )
    from crmfs.registry.sqlite_registry import SqliteRegistry

    return SqliteRegistry(config.data_dir / "registry.db")


def _password(key: str, variable: str | None) -> str | None:
    """The password in the environment variable ``<key>.password_env`` names, if any."""
    if variable is None:
        return None
    password = os.environ.get(variable)
    if not password:
        raise ConfigError(
            f"crmfs.yaml {key}.password_env names the environment variable {variable},"
            " which is not set (or empty): set it to the server's password, or remove"
            " password_env if the server needs none"
        )
    return password


def entity_key_ttl(plan: ViewPlan) -> int | None:
    """How long (s) a view's online state of an entity may go unwritten before Redis drops
    it: the view's TTL or its longest window and hop, whichever is longer, plus
    ``KEY_TTL_MARGIN_S``. By then every latest value is past the TTL and every window
    empty. None (never) for views without a TTL."""
    if plan.ttl_us is None:
        return None
    reach_us = max([plan.ttl_us, *(g.horizon_us + g.hop_us for g in plan.hop_groups)])
    return -(-reach_us // 1_000_000) + KEY_TTL_MARGIN_S
