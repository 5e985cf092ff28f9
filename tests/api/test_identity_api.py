"""Over HTTP, people are named by a golden id or by any strong identifier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from crmfs.api.app import create_app
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros
from tests.api.conftest import NO_CACHE
from tests.identity.test_identity_features import REFS, T0, VIEW, _event


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    store = FeatureStore(tmp_path, definitions=[VIEW], clock=lambda: to_micros(T0) + 3_600_000_000)
    store.apply()
    store.ingest(
        "touches",
        [
            _event(1, 5, "ann@example.com", "+1 202 555 0100", 10.0),
            _event(2, 6, None, "+1 202 555 0100", 5.0),
        ],
    )
    with TestClient(create_app(store, NO_CACHE)) as client:
        yield client
    store.close()


def test_rows_name_people_by_identifier_or_golden_id(client: TestClient) -> None:
    lookup = client.get("/v1/identity/email/Ann@Example.com")
    assert lookup.status_code == 200
    golden = lookup.json()["golden_id"]
    assert golden is not None
    rows = [{"email": "ann@example.com"}, {"golden_id": golden}, {"email": "nobody@example.com"}]
    got = client.post("/v1/features", json={"features": REFS, "entities": rows}).json()
    assert [e.get("golden_id") for e in got["entities"]] == [golden, golden, None]
    assert got["features"]["engagement:touches_1d"]["values"] == [2, 2, 0]
    assert got["features"]["engagement:last_amount"]["statuses"] == ["fresh", "fresh", "missing"]
    by_phone = client.get("/v1/identity/phone/+12025550100").json()
    assert by_phone["golden_id"] == golden
