"""API keys, roles, masking and refusal by sensitivity label, and the audit of each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from crmfs.api.app import create_app
from crmfs.api.settings import CacheSettings, ServerSettings
from crmfs.config import ProjectConfig
from crmfs.errors import ConfigError
from crmfs.serving.access import KEYS_FILE, ApiKeys, hash_key, parse_roles
from crmfs.serving.audit import AUDIT_FILE, AuditLog
from crmfs.store import FeatureStore

ROLES = {"recs_only": {"abilities": ["read"], "services": ["recs"], "labels": ["internal"]}}
SETTINGS = ServerSettings(cache=CacheSettings(enabled=False), roles=parse_roles(ROLES))
ROWS = [{"customer_id": "c1"}]


@pytest.fixture
def keys(store: FeatureStore) -> ApiKeys:
    return ApiKeys(store.config.data_dir / KEYS_FILE, SETTINGS.roles)


@pytest.fixture
def client(store: FeatureStore, keys: ApiKeys) -> Iterator[TestClient]:
    keys.add("operator", ["admin"])  # keys exist: the server is no longer open
    with TestClient(create_app(store, SETTINGS)) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def read(client: TestClient, key: str | None, **body: object) -> object:
    body = body or {"feature_service": "recs"}
    body["entities"] = ROWS
    headers = auth(key) if key else {}
    return client.post("/v1/features", json=body, headers=headers)


def test_keys_are_stored_hashed_and_shown_once(keys: ApiKeys) -> None:
    key = keys.add("ranker", ["reader"])
    text = keys.path.read_text()
    assert key not in text
    assert hash_key(key) in text
    assert [r.name for r in keys.records()] == ["ranker"]
    assert oct(keys.path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ConfigError, match="exists"):
        keys.add("ranker", ["reader"])
    with pytest.raises(ConfigError, match="not defined"):
        keys.add("other", ["superuser"])


def test_no_key_is_401_and_a_wrong_key_too(client: TestClient, store: FeatureStore) -> None:
    missing = read(client, None)
    assert missing.status_code == 401  # type: ignore[attr-defined]
    assert missing.headers["www-authenticate"] == "Bearer"  # type: ignore[attr-defined]
    assert read(client, "crmfs_not-a-key").status_code == 401  # type: ignore[attr-defined]
    by_header = client.post(
        "/v1/features",
        json={"feature_service": "recs", "entities": ROWS},
        headers={"X-API-Key": "wrong"},
    )
    assert by_header.status_code == 401
    # The key is checked before the body: a caller without one learns nothing of the API.
    assert client.post("/v1/features", json={"entities": 1}).status_code == 401
    decisions = [r["decision"] for r in AuditLog(store.config.data_dir / AUDIT_FILE).recent()]
    assert decisions == ["unauthenticated"] * 4


def test_a_role_without_the_ability_or_service_is_403(client: TestClient, keys: ApiKeys) -> None:
    ingester = keys.add("loader", ["ingester"])
    assert read(client, ingester).status_code == 403  # type: ignore[attr-defined]
    recs_only = keys.add("recs_model", ["recs_only"])
    assert read(client, recs_only).status_code == 200  # type: ignore[attr-defined]
    other = read(client, recs_only, features=["activity:orders_1h"])
    assert other.status_code == 403  # type: ignore[attr-defined]
    assert "ad-hoc feature lists" in other.json()["detail"]  # type: ignore[attr-defined]
    reader = keys.add("ranker", ["reader"])
    events = client.post("/v1/sources/orders/events", json=[], headers=auth(reader))
    assert events.status_code == 403
    assert "may not ingest" in events.json()["detail"]
    assert client.get("/v1/admin/audit", headers=auth(reader)).status_code == 403
    assert client.get("/v1/identity/email/a@b.c", headers=auth(reader)).status_code == 403


def test_sensitive_features_are_masked_for_roles_without_the_label(
    client: TestClient, keys: ApiKeys, store: FeatureStore
) -> None:
    reader = keys.add("ranker", ["reader"])  # public and internal labels only
    got = read(client, reader).json()  # type: ignore[attr-defined]
    spend = got["features"]["spending:spend_30d"]
    assert spend == {"values": [None], "statuses": ["masked"], "ages_s": [None]}
    assert got["features"]["activity:orders_30d"]["values"] == [2]
    trusted = keys.add("analyst", ["trusted_reader"])
    clear = read(client, trusted).json()  # type: ignore[attr-defined]
    assert clear["features"]["spending:spend_30d"]["values"] == [12.5]
    admin_key = keys.add("root", ["admin"])
    audit = client.get("/v1/admin/audit", headers=auth(admin_key)).json()["records"]
    masked = [r for r in audit if r["decision"] == "masked"]
    assert len(masked) == 1
    assert masked[0]["key"] == "ranker"
    assert masked[0]["features"] == {"spending:spend_30d": "confidential"}
    metrics = client.get("/metrics").text
    assert 'crmfs_access_decisions_total{decision="masked"}' in metrics


def test_a_refusing_server_answers_403_instead_of_masking(
    store: FeatureStore, keys: ApiKeys
) -> None:
    refusing = ServerSettings(
        cache=CacheSettings(enabled=False), roles=SETTINGS.roles, refuse_sensitive=True
    )
    reader = keys.add("ranker", ["reader"])
    with TestClient(create_app(store, refusing)) as client:
        response = read(client, reader)
    assert response.status_code == 403  # type: ignore[attr-defined]
    assert "spending:spend_30d (confidential)" in response.json()["detail"]  # type: ignore[attr-defined]
    records = AuditLog(store.config.data_dir / AUDIT_FILE).recent()
    assert records[-1]["decision"] == "forbidden"
    assert records[-1]["key"] == "ranker"


def test_a_revoked_key_is_refused(client: TestClient, keys: ApiKeys) -> None:
    key = keys.add("ranker", ["reader"])
    assert read(client, key).status_code == 200  # type: ignore[attr-defined]
    keys.revoke("ranker")
    assert read(client, key).status_code == 401  # type: ignore[attr-defined]


def test_without_keys_the_server_is_open(store: FeatureStore) -> None:
    with TestClient(create_app(store, SETTINGS)) as client:
        assert read(client, None).status_code == 200  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ({"r": {"abilities": ["fly"]}}, "server.roles.r.abilities: 'fly' is not one of"),
        ({"r": {"labels": ["secret"]}}, "server.roles.r.labels: 'secret'"),
        ({"r": {"services": "recs"}}, "server.roles.r.services must be a list"),
        ({"r": {"other": []}}, "unknown keys ['other']"),
        ({"r": []}, "server.roles.r must be a mapping"),
    ],
)
def test_bad_role_settings_name_the_field(roles: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerSettings.of({"roles": roles})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("{on_sensitive: hide}", "server.on_sensitive 'hide' must be 'mask' or 'refuse'"),
        ("{cache: {ttl_s: 0}}", "server.cache.ttl_s 0 must be a number of seconds in (0, 60]"),
        ("{cache: {enabled: 'yes'}}", "server.cache.enabled 'yes' must be true, false or auto"),
        ("{cache: {size: 1}}", "server.cache.size is not an option"),
        ("{max_body_mb: 0}", "server.max_body_mb 0 must be a positive integer"),
        ("{max_entities: many}", "server.max_entities 'many' must be a positive integer"),
        ("{port: 1}", "server.port is not an option"),
        ("[mask]", "'server' must be a mapping"),
    ],
)
def test_bad_server_settings_name_the_field(tmp_path: Path, server: str, message: str) -> None:
    (tmp_path / "crmfs.yaml").write_text(f"project: p\nserver: {server}\n")
    with pytest.raises(ConfigError) as caught:
        ProjectConfig.load(tmp_path)
    assert message in str(caught.value)


def test_server_settings_are_typed_from_a_checked_section(tmp_path: Path) -> None:
    (tmp_path / "crmfs.yaml").write_text(
        "project: p\nserver: {on_sensitive: refuse, max_body_mb: 2, cache: {enabled: true}}\n"
    )
    settings = ServerSettings.of(ProjectConfig.load(tmp_path).server)
    assert settings.refuse_sensitive
    assert settings.max_body_bytes == 2 * 2**20
    assert settings.cache.enabled is True
    assert settings.cache.ttl_s == 1.0
    assert set(settings.roles) == {"reader", "trusted_reader", "ingester", "admin"}
