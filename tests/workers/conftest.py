"""Stream-worker fixtures: a project on the shared Redis (its own key prefix, deleted after)
and its worker processes (killed after).

Redis must answer at 127.0.0.1:6379: these tests fail, never skip, when it does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crmfs.storage.redis_streams import RedisStreamBus
from tests.storage.redis_servers import delete_prefix, require_shared_redis, unique_prefix
from tests.workers.crm_project import make_project
from tests.workers.harness import Workers, open_transport


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    require_shared_redis()
    name = unique_prefix(request.node.name)
    yield name
    delete_prefix(name)


@pytest.fixture
def project(tmp_path: Path, prefix: str) -> Path:
    folder = tmp_path / "project"
    make_project(folder, prefix)
    return folder


@pytest.fixture
def transport(project: Path, prefix: str) -> Iterator[RedisStreamBus]:
    bus = open_transport(prefix)
    yield bus
    bus.close()


@pytest.fixture
def workers(project: Path, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(project, tmp_path)
    yield running
    running.kill_all()
