"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.storage.redis_servers import (
    ThrowawayRedis,
    delete_prefix,
    require_shared_redis,
    unique_prefix,
)


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis (127.0.0.1:6379, which must
    answer: Redis tests fail, never skip), emptied after the test."""
    require_shared_redis()
    prefix = unique_prefix(request.node.name)
    yield prefix
    delete_prefix(prefix)


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    """A redis-server of this test's own (started), killed after the test."""
    server = ThrowawayRedis(tmp_path)
    server.start()
    yield server
    server.kill()
