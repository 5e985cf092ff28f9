"""``crmfs keys`` and the guards of ``crmfs serve``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from crmfs.api.runner import is_loopback, serve
from crmfs.cli.app import app
from crmfs.errors import ConfigError
from crmfs.serving.access import KEYS_FILE, hash_key

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + str(result.exception)
    return result.output


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "shop"
    _ok("init", str(folder))
    return folder


def test_keys_are_added_listed_and_revoked(project: Path) -> None:
    repo = ("--repo", str(project))
    out = _ok("keys", "add", "ranker", "--role", "reader", *repo)
    key = out.strip().splitlines()[-1]
    assert key.startswith("crmfs_")
    stored = (project / "data" / KEYS_FILE).read_text()
    assert hash_key(key) in stored
    assert key not in stored
    listed = _ok("keys", "list", *repo)
    assert "ranker" in listed
    assert "reader" in listed
    _ok("keys", "revoke", "ranker", *repo)
    assert "ranker" not in _ok("keys", "list", *repo)
    bad = runner.invoke(app, ["keys", "add", "x", "--role", "wizard", *repo])
    assert bad.exit_code != 0
    assert "wizard" in str(bad.exception)


def test_serving_beyond_loopback_needs_keys(project: Path) -> None:
    with pytest.raises(ConfigError, match="no API keys"):
        serve(project, host="0.0.0.0")
    with pytest.raises(ConfigError, match="--workers must be at least 1"):
        serve(project, workers=0)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("10.1.2.3", False), ("example.com", False)],
)  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_get_takes_a_maximum_age(project: Path) -> None:
    import json

    repo = ("--repo", str(project))
    _ok("apply", *repo)
    _ok("ingest", "web_events", str(project / "data" / "sample_web_events.csv"), *repo)
    ref = "customer_activity:events_30d"
    relaxed = json.loads(_ok("get", ref, "-e", "customer_id=c1", "--json", *repo))
    strict = json.loads(_ok("get", ref, "-e", "customer_id=c1", "--max-age", "0", "--json", *repo))
    assert relaxed["features"][0][ref]["status"] != "stale"
    assert strict["features"][0][ref]["status"] == "stale"
