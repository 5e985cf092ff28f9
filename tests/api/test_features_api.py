"""The HTTP API over a real store: values with status and age, ingestion, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from crmfs.store import FeatureStore
from tests.api.conftest import order

PROBLEM = "application/problem+json"


def features(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/features", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_values_come_with_their_status_and_age(client: TestClient) -> None:
    got = features(
        client,
        features=["activity:orders_1h", "activity:last_qty"],
        entities=[{"customer_id": "c1"}, {"customer_id": "unknown"}],
    )
    assert got["entities"] == [{"customer_id": "c1"}, {"customer_id": "unknown"}]
    orders = got["features"]["activity:orders_1h"]
    assert orders["values"] == [2, 0]
    assert orders["statuses"] == ["fresh", "fallback"]  # the view's default serves
    assert orders["fallbacks"] == [None, "default"]
    last = got["features"]["activity:last_qty"]
    assert last == {"values": [3, None], "statuses": ["fresh", "missing"], "ages_s": [600.0, None]}


def test_feast_shaped_entity_columns_are_accepted(client: TestClient) -> None:
    got = features(client, features=["activity:orders_30d"], entities={"customer_id": ["c2", "c1"]})
    assert got["features"]["activity:orders_30d"]["values"] == [1, 2]


def test_a_feature_service_applies_its_consent(client: TestClient) -> None:
    got = features(client, feature_service="recs", entities=[{"customer_id": "c1"}])
    assert set(got["features"]) == {
        "activity:orders_1h",
        "activity:orders_30d",
        "activity:last_qty",
        "spending:spend_30d",
    }
    assert got["features"]["spending:spend_30d"]["values"] == [12.5]
    revoke = [{"event_id": "r1", "ts": "2026-06-01T12:00:00+00:00", "customer_id": "c1",
               "personalization": False}]  # fmt: skip
    assert client.post("/v1/sources/consents/events", json=revoke).status_code == 200
    after = features(client, feature_service="recs", entities=[{"customer_id": "c1"}])
    for column in after["features"].values():
        assert column["statuses"] == ["consent_withheld"]
        assert column["values"] == [None]


def test_a_request_may_bound_the_age_of_values(client: TestClient) -> None:
    got = features(
        client, features=["activity:last_qty"], entities=[{"customer_id": "c1"}], max_age_s=60
    )
    assert got["features"]["activity:last_qty"]["statuses"] == ["stale"]


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"features": ["activity:nope"], "entities": [{"customer_id": "c1"}]}, 404, "activity:nope"),
        ({"features": ["activity:orders_1h"], "entities": [{"id": "c1"}]}, 422, "customer_id"),
        ({"features": ["activity:orders_1h"], "entities": []}, 422, "entities"),
        ({"features": ["activity:orders_1h"], "entities": "c1"}, 422, "entities"),
        ({"features": ["activity:orders_1h"], "entities": [{"customer_id": 1.5}]}, 422, "customer_id"),
        ({"entities": [{"customer_id": "c1"}]}, 422, "feature_service"),
        ({"features": ["activity:orders_1h"], "feature_service": "recs", "entities": [{}]}, 422, "feature_service"),
        ({"feature_service": "nope", "entities": [{"customer_id": "c1"}]}, 404, "nope"),
        ({"features": ["activity:orders_1h"], "entities": [{"customer_id": "c"}], "max_age_s": -1}, 422, "max_age_s"),
        ({"features": ["activity:orders_1h"], "entities": [{"customer_id": "c"}], "extra": 1}, 422, "extra"),
        ({"features": ["activity:orders_1h"], "entities": {"customer_id": ["a"], "x": []}}, 422, "entities"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_problem_naming_the_field(
    client: TestClient, body: dict[str, Any], status: int, names: str
) -> None:
    response = client.post("/v1/features", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    assert names in problem["detail"]


def test_a_body_that_is_not_json_is_a_problem(client: TestClient) -> None:
    response = client.post(
        "/v1/features", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


def test_too_many_entities_are_refused(store: FeatureStore) -> None:
    from crmfs.api.app import create_app
    from crmfs.api.settings import CacheSettings, ServerSettings

    settings = ServerSettings(cache=CacheSettings(enabled=False), max_entities=2)
    with TestClient(create_app(store, settings)) as client:
        rows = [{"customer_id": f"c{i}"} for i in range(3)]
        response = client.post(
            "/v1/features", json={"features": ["activity:orders_1h"], "entities": rows}
        )
    assert response.status_code == 422
    assert "over this server's limit of 2" in response.json()["detail"]


def test_events_are_ingested_as_a_json_array(client: TestClient, store: FeatureStore) -> None:
    response = client.post(
        "/v1/sources/orders/events", json=[order("e9", "c3", 4), order("e9", "c3", 4), 7]
    )
    assert response.status_code == 200
    assert response.json() == {
        "source": "orders",
        "received": 3,
        "accepted": 1,
        "duplicates": 1,
        "quarantined": 1,
        "reasons": response.json()["reasons"],
    }
    kept = store.quarantine("orders")
    assert any("item 2: expected an object, got int" in q.reason for q in kept)
    got = features(client, features=["activity:orders_30d"], entities=[{"customer_id": "c3"}])
    assert got["features"]["activity:orders_30d"]["values"] == [1]


def test_ndjson_lines_that_do_not_parse_are_quarantined(
    client: TestClient, store: FeatureStore
) -> None:

    good = json.dumps(order("n1", "c4", 1))
    bad_schema = json.dumps({**order("n2", "c4", 1), "qty": "many"})
    body = f"{good}\n{{broken\n\n{bad_schema}\n".encode()
    response = client.post(
        "/v1/sources/orders/events", content=body, headers={"content-type": "application/x-ndjson"}
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["received"], report["accepted"], report["quarantined"]) == (3, 1, 2)
    reasons = " | ".join(q.reason for q in store.quarantine("orders"))
    assert "line 2: not valid JSON" in reasons
    assert "qty" in reasons


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "names"),
    [
        ("/v1/sources/nope/events", b"[]", "application/json", 422, "unknown source 'nope'"),
        ("/v1/sources/orders/events", b"{", "application/json", 422, "body: not valid JSON"),
        ("/v1/sources/orders/events", b"{}", "application/json", 422, "JSON array"),
        ("/v1/sources/orders/events", b"a,b", "text/csv", 422, "content-type 'text/csv'"),
    ],
)
def test_bad_ingestion_requests_are_refused_whole(
    client: TestClient, path: str, body: bytes, content_type: str, status: int, names: str
) -> None:
    response = client.post(path, content=body, headers={"content-type": content_type})
    assert response.status_code == status
    assert names in response.json()["detail"]


def test_identity_lookup(client: TestClient) -> None:
    response = client.get("/v1/identity/email/ann@example.com")
    assert response.status_code == 200
    assert response.json() == {"kind": "email", "value": "ann@example.com", "golden_id": None}
    unknown = client.get("/v1/identity/shoe_size/42")
    assert unknown.status_code == 404
    assert "shoe_size" in unknown.json()["detail"]


def test_health_readiness_and_services(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "detail": {}}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready"
    assert ready["detail"]["watermark_seq"] > 0
    services = client.get("/v1/services").json()
    assert services["services"]["recs"]["purpose"] == "personalization"
    assert services["views"]["activity"]["freshness_sla_s"] == 3600


def test_readiness_fails_when_definitions_are_not_applied(tmp_path: object) -> None:
    from pathlib import Path

    from crmfs.api.app import create_app
    from crmfs.store import FeatureStore
    from tests.api.conftest import DEFINITIONS, NO_CACHE

    store = FeatureStore(Path(str(tmp_path)), definitions=DEFINITIONS)
    with TestClient(create_app(store, NO_CACHE)) as client:
        response = client.get("/ready")
    store.close()
    assert response.status_code == 503
    assert "crmfs apply" in response.json()["detail"]


def test_metrics_count_requests_values_and_latency(client: TestClient) -> None:
    features(client, features=["activity:orders_1h"], entities=[{"customer_id": "zz"}])
    text = client.get("/metrics").text
    assert 'crmfs_http_request_seconds_bucket{endpoint="/v1/features"' in text
    assert 'crmfs_served_values_total{status="fallback"}' in text
    assert 'crmfs_http_requests_total{endpoint="/v1/features",status="200"}' in text


def test_a_body_over_the_limit_is_413(store: FeatureStore) -> None:
    from crmfs.api.app import create_app
    from crmfs.api.settings import CacheSettings, ServerSettings

    settings = ServerSettings(cache=CacheSettings(enabled=False), max_body_bytes=1_000)
    with TestClient(create_app(store, settings)) as client:
        events = [order(f"big{i}", "c9", 1) for i in range(50)]
        response = client.post("/v1/sources/orders/events", json=events)
        body = json.dumps(events).encode()
        chunks = (body[i : i + 300] for i in range(0, len(body), 300))  # no Content-Length
        streamed = client.post(
            "/v1/sources/orders/events",
            content=chunks,
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert streamed.status_code == 413
    assert "limit of 1,000 bytes" in streamed.json()["detail"]
    assert store.get_online_features(["activity:orders_30d"], [{"customer_id": "c9"}]).values[
        "activity:orders_30d"
    ] == [0]  # nothing of it was ingested


def test_readiness_fails_once_definitions_change_under_the_server(
    client: TestClient, store: FeatureStore
) -> None:
    from dataclasses import replace

    from tests.api.conftest import activity, recs, spending
    from tests.orders_project import consent_view

    assert client.get("/ready").status_code == 200
    other = FeatureStore(
        store.config.root,
        definitions=[activity, spending, replace(consent_view, ttl="7d"), recs],
    )
    other.apply()  # another process applies new definitions
    other.close()
    response = client.get("/ready")
    assert response.status_code == 503
    assert "restart it" in response.json()["detail"]
