"""The command line, end to end on a scaffolded project."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from crmfs.cli.app import app

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + str(result.exception)
    return result.output


def test_init_project_works_out_of_the_box(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    _ok("init", str(project))
    repo = ("--repo", str(project))
    assert "add" in _ok("plan", *repo)
    _ok("apply", *repo)
    assert "no changes" in _ok("plan", *repo)
    out = _ok("ingest", "web_events", str(project / "data" / "sample_web_events.csv"), *repo)
    assert "60 accepted" in out
    again = _ok("ingest", "web_events", str(project / "data" / "sample_web_events.csv"), *repo)
    assert "60 duplicates" in again
    got = json.loads(
        _ok(
            "get",
            "customer_activity:events_30d",
            "customer_purchases:spend_30d",
            "-e",
            "customer_id=c1",
            "--json",
            *repo,
        )
    )
    cells = got["features"][0]
    assert (
        cells["customer_activity:events_30d"]["value"] == 15
    )  # 60 events over 4 customers, every 3 h
    assert cells["customer_activity:events_30d"]["status"] == "fresh"
    assert cells["customer_purchases:spend_30d"]["value"] > 0
    assert "entities materialized" in _ok("materialize", *repo)
    assert "PARITY OK" in _ok("parity", *repo)


def test_bad_input_is_quarantined_and_listed(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    _ok("init", str(project))
    repo = ("--repo", str(project))
    _ok("apply", *repo)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"event_id": "x1", "event_time": "2026-01-01T00:00:00Z", "customer_id": "c9", "amount": "ten"}\n'
        "{not json\n"
        '{"event_id": "x2", "event_time": "2026-01-01T00:00:00Z", "customer_id": "c9"}\n'
    )
    out = _ok("ingest", "web_events", str(bad), *repo)
    assert "1 accepted" in out
    assert "2 quarantined" in out
    listing = _ok("quarantine", *repo)
    assert "amount" in listing
    assert "invalid JSON" in listing


def test_errors_are_clear_and_exit_non_zero(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "--repo", str(tmp_path)])
    assert result.exit_code != 0
    assert "crmfs init" in str(result.exception)
