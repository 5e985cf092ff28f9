"""Online store fixtures: every conformance test runs on SQLite and on a real Redis.

Redis must answer at 127.0.0.1:6379: the Redis tests fail, never skip, when it does not.
Each Redis test works under its own key prefix, whose keys are deleted after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crmfs.storage.ports import OnlineStore
from crmfs.storage.redis_connection import RedisSettings
from crmfs.storage.redis_online import RedisOnlineStore
from crmfs.storage.sqlite_online import SqliteOnlineStore
from tests.storage.redis_servers import (
    SHARED_URL,
    ThrowawayRedis,
)

OpenStore = Callable[[], OnlineStore]


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens a store on this test's storage; each call is another client of the same data
    (another connection, as another process would have). All are closed after the test."""
    opened: list[OnlineStore] = []
    if request.param == "sqlite":

        def new() -> OnlineStore:
            return SqliteOnlineStore(tmp_path / "online.db")

    else:
        prefix: str = request.getfixturevalue("redis_prefix")

        def new() -> OnlineStore:
            return RedisOnlineStore(RedisSettings(SHARED_URL), prefix, write_lease_s=10)

    def opening() -> OnlineStore:
        store = new()
        opened.append(store)
        return store

    yield opening
    for store in opened:
        store.close()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    """A redis-server of this test's own that writes every change to disk before it answers."""
    server = ThrowawayRedis(tmp_path, durable=True)
    server.start()
    yield server
    server.kill()
