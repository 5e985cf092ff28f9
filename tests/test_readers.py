"""File ingestion: CSV, JSON lines and Parquet, bad rows to the quarantine, progress, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from crmfs.cli.app import app
from crmfs.errors import IngestError
from crmfs.ingestion.pipeline import IngestReport
from crmfs.ingestion.readers import Chunk
from crmfs.store import FeatureStore
from tests.orders_project import NOW, orders_store

HEADER = ["event_id", "ts", "customer_id", "qty", "price"]


def _store(folder: Path) -> FeatureStore:
    return orders_store(folder / "project")


def _rows(n: int) -> list[dict[str, object]]:
    """n good orders of customer c1, one per minute before 11:00, qty 1 each."""
    return [
        {
            "event_id": f"e{i}",
            "ts": f"2026-06-01T10:{i:02d}:00Z",
            "customer_id": "c1",
            "qty": 1,
            "price": float(i),
        }
        for i in range(n)
    ]


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    if path.suffix == ".csv":
        lines = [",".join(HEADER)] + [",".join(str(r[h]) for h in HEADER) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _online(store: FeatureStore) -> tuple[int, float]:
    got = store.get_online_features(
        ["orders_view:qty_30d", "orders_view:price"], [{"customer_id": "c1"}], now=NOW
    )
    return got.values["orders_view:qty_30d"][0], got.values["orders_view:price"][0]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_each_format_lands_online(tmp_path: Path, suffix: str) -> None:
    store = _store(tmp_path)
    path = _write(tmp_path / f"orders{suffix}", _rows(7))
    report = store.ingest_file("orders", path)
    assert (report.received, report.accepted, report.quarantined) == (7, 7, 0)
    assert _online(store) == (7, 6.0)
    assert store.ingest_file("orders", path).duplicates == 7  # a re-sent file changes nothing
    assert _online(store) == (7, 6.0)


def test_bad_csv_rows_are_quarantined_with_the_field_and_good_rows_land(tmp_path: Path) -> None:
    store = _store(tmp_path)
    path = tmp_path / "orders.csv"
    path.write_text(
        "event_id,ts,customer_id,qty,price,coupon\n"
        "ok1,2026-06-01T10:00:00Z,c1,2,1.5,SPRING\n"
        "badnum,2026-06-01T10:01:00Z,c1,two,1.5,\n"
        "badts,yesterday,c1,1,1.5,\n"
        "nocustomer,2026-06-01T10:02:00Z,,1,1.5,\n"
        "short,2026-06-01T10:03:00Z,c1\n"
        "badprice,2026-06-01T10:04:00Z,c1,1,cheap,\n"
        "ok2,2026-06-01T10:05:00Z,c1,3,4.5,\n"
    )
    report = store.ingest_file("orders", path, chunk_rows=2)
    assert (report.received, report.accepted, report.quarantined) == (7, 2, 5)
    assert report.reasons == {
        "qty": 1,
        "ts": 1,
        "customer_id": 1,
        "price": 1,
        "unparsable": 1,
    }
    # The unknown column `coupon` is ignored: good rows land without it.
    assert _online(store) == (5, 4.5)
    stored = store.log.read("orders")
    assert stored is not None
    assert "coupon" not in stored.column_names
    assert sorted(stored.column("event_id").to_pylist()) == ["ok1", "ok2"]

    quarantined = {q.record.get("event_id", q.record.get("line")): q for q in store.quarantine()}
    assert quarantined["badnum"].field == "qty"
    assert quarantined["badnum"].reason == "qty: 'two' is not a valid int: not a number"
    assert quarantined["badts"].field == "ts"
    assert quarantined["badts"].reason.startswith("ts: 'yesterday' is not a valid timestamp")
    assert quarantined["nocustomer"].field == "customer_id"
    assert quarantined["nocustomer"].reason == "customer_id: is required but missing"
    assert quarantined["badprice"].field == "price"
    # The record is kept as read, unknown columns included, so it can be fixed and re-sent.
    assert quarantined["badnum"].record["qty"] == "two"
    short = quarantined["short,2026-06-01T10:03:00Z,c1"]
    assert short.field is None
    assert short.reason == "line 6: expected 6 columns, got 3"


def test_progress_is_reported_chunk_by_chunk(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for suffix in (".csv", ".jsonl", ".parquet"):
        path = _write(tmp_path / f"orders{suffix}", _rows(10))
        seen: list[tuple[int, int, str, int]] = []

        def progress(
            chunk: Chunk, total: IngestReport, seen: list[tuple[int, int, str, int]] = seen
        ) -> None:
            seen.append((chunk.position, chunk.total, chunk.unit, total.received))

        store.ingest_file("orders", path, chunk_rows=3, progress=progress)
        positions = [p for p, _, _, _ in seen]
        received = [r for _, _, _, r in seen]
        size = 10 if suffix == ".parquet" else path.stat().st_size
        assert all(total == size for _, total, _, _ in seen), suffix
        assert {unit for _, _, unit, _ in seen} == {"rows" if suffix == ".parquet" else "bytes"}
        assert len([r for r in received if r]) >= 4, suffix  # 10 rows in chunks of 3
        assert received[:4] == [3, 6, 9, 10], suffix
        assert positions == sorted(positions), suffix
        assert 0 < positions[0] < size, suffix
        assert positions[-1] == size, suffix
    assert _online(store)[0] == 10


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("orders.txt", b"x", r"unknown file type '\.txt'.*\.csv"),
        ("orders", b"x", r"unknown file type '\(none\)'"),
        ("orders.parquet", b"not parquet at all", "orders.parquet is not a readable Parquet file"),
        ("orders.json", b'[{"event_id": "a"}]\n', "holds a JSON array; crmfs reads JSON lines"),
        ("orders.csv", b"", "empty CSV, expected a header line"),
        ("orders.csv", b"event_id,ts\n\xff\xfe,x\n", "orders.csv: malformed CSV"),
    ],
)
def test_unreadable_files_give_a_clear_error(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    store = _store(tmp_path)
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IngestError, match=message):
        store.ingest_file("orders", path)
    assert store.log.counts() == {}


def test_missing_file_folder_and_unknown_source(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(IngestError, match=r"file not found: .*missing\.csv"):
        store.ingest_file("orders", tmp_path / "missing.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(IngestError, match=r"folder\.csv: not a regular file"):
        store.ingest_file("orders", tmp_path / "folder.csv")
    good = _write(tmp_path / "orders.csv", _rows(1))
    with pytest.raises(IngestError, match="unknown source 'order'; sources: orders"):
        store.ingest_file("order", good)


def test_cli_ingests_every_format(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(project)]).exit_code == 0
    assert runner.invoke(app, ["apply", "--repo", str(project)]).exit_code == 0
    sample = project / "data" / "sample_web_events.csv"
    table = pacsv.read_csv(sample)
    parquet = tmp_path / "events.parquet"
    pq.write_table(table.slice(0, 20), parquet)
    jsonl = tmp_path / "events.jsonl"
    rows = table.slice(20, 20).to_pylist()
    jsonl.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
    for path in (parquet, jsonl):
        result = runner.invoke(app, ["ingest", "web_events", str(path), "--repo", str(project)])
        assert result.exit_code == 0, result.output
        assert "20 received, 20 accepted, 0 duplicates, 0 quarantined" in result.output
    # The CSV holds all 60 events, 40 of them sent already as Parquet and JSON lines.
    result = runner.invoke(
        app, ["ingest", "web_events", str(sample), "--repo", str(project), "--chunk-rows", "7"]
    )
    assert result.exit_code == 0, result.output
    assert "60 received, 20 accepted, 40 duplicates, 0 quarantined" in result.output
    unknown = runner.invoke(app, ["ingest", "web_events", str(project), "--repo", str(project)])
    assert unknown.exit_code != 0
    assert "not a regular file" in str(unknown.exception)
