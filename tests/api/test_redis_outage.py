"""The server over a Redis that goes away: problems with 503 (never a 500), readiness down,
and service again once Redis is back, its cache having passed reads through meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from crmfs.api.app import create_app
from crmfs.store import FeatureStore
from tests.api.conftest import redis_project
from tests.storage.redis_servers import ThrowawayRedis

BODY = {"features": ["activity:qty_30d"], "entities": [{"customer_id": "c1"}]}


@pytest.fixture
def store(tmp_path: Path, throwaway_redis: ThrowawayRedis) -> Iterator[FeatureStore]:
    online = f'{{type: redis, url: "{throwaway_redis.url}", retries: 1, backoff_s: 0.01, timeout_s: 0.5}}'
    store = redis_project(tmp_path / "project", online)
    yield store
    store.close()


def test_an_outage_is_a_503_problem_and_service_resumes(
    store: FeatureStore, throwaway_redis: ThrowawayRedis
) -> None:
    with TestClient(create_app(store)) as client:  # the cache is on: Redis, auto
        assert client.post("/v1/features", json=BODY).json()["features"]["activity:qty_30d"][
            "values"
        ] == [3]
        throwaway_redis.kill()
        down = client.post("/v1/features", json=BODY)
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert "Redis" in down.json()["detail"] or "redis" in down.json()["detail"]
        assert client.get("/ready").status_code == 503
        throwaway_redis.start()  # an empty Redis: the states are gone until rebuilt
        store.materialize()
        assert client.get("/ready").status_code == 200
        back = client.post("/v1/features", json=BODY).json()
        assert back["features"]["activity:qty_30d"]["values"] == [3]
