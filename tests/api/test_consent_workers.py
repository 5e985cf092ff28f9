"""Consent at read time across worker processes: ``crmfs serve --workers 2`` on Redis, its
read caches warm, and a revocation ingested by ANOTHER process (so no worker hears of it but
through the online store's change feed): within one second, every worker withholds."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crmfs.store import FeatureStore
from tests.api.conftest import redis_project
from tests.storage.redis_servers import SHARED_URL, free_port

WORKERS = 2
READS = 40  # each on a new connection, so that both workers answer some


@pytest.fixture
def project(tmp_path: Path, redis_prefix: str) -> Path:
    online = f'{{type: redis, url: "{SHARED_URL}", key_prefix: {redis_prefix}}}'
    # Cached states would live 30 s: only the change feed can make a worker forget them.
    redis_project(tmp_path, online, server="{cache: {ttl_s: 30}}").close()
    return tmp_path


@pytest.fixture
def server(project: Path) -> Iterator[int]:
    port = free_port()
    crmfs = Path(sys.executable).with_name("crmfs")
    log = (project / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(crmfs), "serve", str(project), "--port", str(port), "--workers", str(WORKERS)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (project / "server.log").read_text()
            assert time.monotonic() < deadline, "the server did not get ready"
            try:
                if _get(port, "/ready")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _read_on_a_new_connection(port: int) -> str:
    """The status of c1's feature, asked on a connection of its own."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = json.dumps({"feature_service": "recs", "entities": [{"customer_id": "c1"}]})
        connection.request("POST", "/v1/features", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        return str(json.loads(response.read())["features"]["activity:qty_30d"]["statuses"][0])
    finally:
        connection.close()


def test_a_revocation_reaches_every_worker_within_a_second(project: Path, server: int) -> None:
    warm = [_read_on_a_new_connection(server) for _ in range(READS)]
    assert set(warm) == {"fresh"}
    # Both workers answered (each reports its cache's hit ratio under its own pid) and
    # hold c1's states in their caches now.
    _, metrics = _get(server, "/metrics")
    pids = set(re.findall(r'crmfs_cache_hit_ratio\{pid="(\d+)"\}', metrics))
    assert len(pids) == WORKERS, metrics

    outside = FeatureStore(project)  # another process's ingestion, as a CRM sync job's
    try:
        outside.ingest(
            "consents",
            [
                {
                    "event_id": "k2",
                    "ts": datetime.now(UTC).isoformat(),
                    "customer_id": "c1",
                    "personalization": False,
                }
            ],
        )
    finally:
        outside.close()
    revoked_at = time.monotonic()
    time.sleep(max(0.0, revoked_at + 1.0 - time.monotonic()))
    after = [_read_on_a_new_connection(server) for _ in range(READS)]
    assert set(after) == {"consent_withheld"}
    _, metrics = _get(server, "/metrics")
    hits = re.search(r"^crmfs_cache_hits_total ([0-9.e+]+)$", metrics, re.M)
    assert hits is not None
    assert float(hits.group(1)) > 0  # the reads were served through warm caches
