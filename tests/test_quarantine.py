"""The quarantine: a rejected record is kept once with its reason, however often it is re-sent."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from crmfs import Aggregation, Entity, EventSource, FeatureView
from crmfs.cli.app import app
from crmfs.storage.event_log import EventLog
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
customer = Entity("customer", join_key="customer_id")


def _source(name: str) -> EventSource:
    return EventSource(
        name,
        schema={"event_id": "string", "ts": "timestamp", "customer_id": "string", "qty": "int"},
        event_id="event_id",
        event_time="ts",
    )


def _store(folder: Path) -> FeatureStore:
    views = [
        FeatureView(f"{name}_view", customer, _source(name), [Aggregation("n", "count", ["1h"])])
        for name in ("orders", "visits")
    ]
    store = FeatureStore(folder, definitions=views, clock=lambda: to_micros(NOW))
    store.apply()
    return store


GOOD = {"event_id": "ok", "ts": "2026-06-01T10:00:00Z", "customer_id": "c1", "qty": 1}
BAD = [
    {**GOOD, "event_id": "b1", "qty": "many"},
    {**GOOD, "event_id": "b2", "ts": "soon"},
    {**GOOD, "event_id": None, "customer_id": "c7"},  # no usable id: keyed by the record
]


def test_resent_bad_records_are_quarantined_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = store.ingest("orders", [GOOD, *BAD])
    assert (first.accepted, first.quarantined, first.already_quarantined) == (1, 3, 0)
    again = store.ingest("orders", [GOOD, *BAD])
    assert (again.received, again.accepted, again.duplicates) == (4, 0, 1)
    assert (again.quarantined, again.already_quarantined) == (3, 3)
    kept = store.quarantine()
    assert sorted(str(q.record["event_id"]) for q in kept) == ["None", "b1", "b2"]
    assert store.log.quarantine_count() == 3


def test_what_differs_is_kept_apart(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.ingest("orders", BAD)
    report = store.ingest(
        "orders",
        [
            {**GOOD, "event_id": "b1", "qty": "lots"},  # same id, another problem
            {**GOOD, "event_id": None, "customer_id": "c8"},  # another record without id
            {**GOOD, "event_id": "b2", "ts": "later"},  # same id, another bad value
            {**GOOD, "event_id": "b3", "qty": "x"},  # twice within one batch
            {**GOOD, "event_id": "b3", "qty": "x"},
        ],
    )
    assert (report.quarantined, report.already_quarantined) == (5, 1)
    report = store.ingest("visits", BAD)  # the same records from another source
    assert (report.quarantined, report.already_quarantined) == (3, 0)
    assert store.log.quarantine_count() == 10
    assert len(store.quarantine("orders")) == 7
    reasons = sorted(q.reason for q in store.quarantine("orders") if q.record["event_id"] == "b1")
    assert reasons == [
        "qty: 'lots' is not a valid int: not a number",
        "qty: 'many' is not a valid int: not a number",
    ]


def test_a_resent_file_with_unreadable_lines_is_quarantined_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    path = tmp_path / "orders.jsonl"
    path.write_text('{"event_id": "a", "ts": "2026-06-01T10:00:00Z", "customer_id": "c1"}\n{oops\n')
    assert store.ingest_file("orders", path).quarantined == 1
    report = store.ingest_file("orders", path)
    assert (report.duplicates, report.quarantined, report.already_quarantined) == (1, 1, 1)
    [kept] = store.quarantine()
    assert kept.reason.startswith("line 2: invalid JSON")


def test_a_log_from_before_deduplication_is_upgraded_on_open(tmp_path: Path) -> None:
    root = tmp_path / "log"
    root.mkdir()
    db = sqlite3.connect(root / "log.db")
    db.execute(
        "CREATE TABLE quarantine (id INTEGER PRIMARY KEY, source TEXT NOT NULL,"
        " quarantined_at INTEGER NOT NULL, field TEXT, reason TEXT NOT NULL,"
        " record TEXT NOT NULL) STRICT"
    )
    db.execute("INSERT INTO quarantine VALUES (1, 'orders', 0, 'qty', 'old', '{}')")
    db.commit()
    db.close()
    log = EventLog(root)
    [old] = log.quarantine()
    assert (old.source, old.reason) == ("orders", "old")
    log.close()


def test_cli_lists_the_quarantine_with_filters_and_json(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.ingest("orders", BAD)
    store.ingest("visits", [{**GOOD, "event_id": "v1", "qty": "none"}])
    store.close()
    (tmp_path / "crmfs.yaml").write_text("project: shop\n")  # the same data folder, data/
    (tmp_path / "definitions.py").write_text("")
    runner = CliRunner()

    def listing(*args: str) -> list[dict[str, Any]]:
        result = runner.invoke(app, ["quarantine", "--repo", str(tmp_path), "--json", *args])
        assert result.exit_code == 0, result.output
        rows: list[dict[str, Any]] = json.loads(result.output)
        return rows

    everything = listing()
    assert [r["source"] for r in everything] == ["visits", "orders", "orders", "orders"]
    visits = listing("--source", "visits")
    assert len(visits) == 1
    assert visits[0]["field"] == "qty"
    assert visits[0]["reason"] == "qty: 'none' is not a valid int: not a number"
    assert visits[0]["record"]["event_id"] == "v1"
    assert visits[0]["quarantined_at"] == NOW.isoformat()
    newest = listing("--source", "orders", "--limit", "2")
    assert [r["id"] for r in newest] == [everything[1]["id"], everything[2]["id"]]
    assert listing("--source", "nothing") == []
    table = runner.invoke(app, ["quarantine", "--repo", str(tmp_path), "--limit", "1"])
    assert table.exit_code == 0
    assert "1 record(s) shown" in table.output
    assert "visits" in table.output
    bad_limit = runner.invoke(app, ["quarantine", "--repo", str(tmp_path), "--limit", "0"])
    assert bad_limit.exit_code != 0
