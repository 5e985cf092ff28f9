"""The server over a Redis that goes away: problems with 503 (never a 500), readiness down,
and service again once Redis is back, its cache having passed reads through meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from crmfs.api.app import create_app
from crmfs.store import FeatureStore
from tests.storage.redis_servers import ThrowawayRedis

DEFINITIONS = """
from crmfs import Entity, EventSource, FeatureView
from crmfs.definitions import Aggregation

customer = Entity("customer", join_key="customer_id")
orders = EventSource(
    "orders",
    schema={"event_id": "string", "ts": "timestamp", "customer_id": "string", "qty": "int"},
    event_id="event_id", event_time="ts",
)
activity = FeatureView("activity", customer, orders, [Aggregation("qty", "sum", ["30d"], field="qty")])
"""
BODY = {"features": ["activity:qty_30d"], "entities": [{"customer_id": "c1"}]}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def store(tmp_path: Path, redis_server: ThrowawayRedis) -> Iterator[FeatureStore]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "crmfs.yaml").write_text(
        "project: outage\ndefinitions: definitions.py\n"
        f'online_store: {{type: redis, url: "{redis_server.url}", retries: 1, backoff_s: 0.01,'
        " timeout_s: 0.5}\n"
    )
    (project / "definitions.py").write_text(DEFINITIONS)
    store = FeatureStore(project)
    store.apply()
    at = datetime.now(UTC).isoformat()
    store.ingest("orders", [{"event_id": "o1", "ts": at, "customer_id": "c1", "qty": 2}])
    yield store
    store.close()


def test_an_outage_is_a_503_problem_and_service_resumes(
    store: FeatureStore, redis_server: ThrowawayRedis
) -> None:
    with TestClient(create_app(store)) as client:  # the cache is on: Redis, auto
        assert client.post("/v1/features", json=BODY).json()["features"]["activity:qty_30d"][
            "values"
        ] == [2]
        redis_server.kill()
        down = client.post("/v1/features", json=BODY)
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert "Redis" in down.json()["detail"] or "redis" in down.json()["detail"]
        assert client.get("/ready").status_code == 503
        redis_server.start()  # an empty Redis: the states are gone until rebuilt
        store.materialize()
        assert client.get("/ready").status_code == 200
        back = client.post("/v1/features", json=BODY).json()
        assert back["features"]["activity:qty_30d"]["values"] == [2]
