"""Compaction keeps the files it replaced for a grace period, so readers mid-query do not fail."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from crmfs.errors import ConfigError
from crmfs.storage.event_log import EVENT_TIME, SEQ, EventLog
from crmfs.store import FeatureStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _append(log: EventLog, ids: list[str]) -> None:
    events = pa.table(
        {"event_id": ids, "qty": list(range(len(ids))), EVENT_TIME: [1_000] * len(ids)}
    )
    log.append("orders", events, ids, [], now=2_000)


def _names(log: EventLog) -> list[str]:
    return [f"{p.parent.name}/{p.name}" for p in log.segment_files("orders")]


def _query(files: list[Path]) -> list[tuple[str, int]]:
    """What a batch query over a listing of segment files returns (DuckDB, as the engine)."""
    listing = ", ".join(f"'{f}'" for f in files)
    sql = f"SELECT event_id, {SEQ} FROM read_parquet([{listing}]) ORDER BY {SEQ}"
    return duckdb.sql(sql).fetchall()


def test_a_reader_holding_the_old_listing_reads_through_a_compaction(tmp_path: Path) -> None:
    clock = FakeClock()
    log = EventLog(tmp_path / "log", compaction_grace_s=60, wall_clock=clock)
    for batch in (["a", "b"], ["c"], ["d", "e"]):
        _append(log, batch)
    expected = [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)]
    listing = log.segment_files("orders")  # a reader lists the files ...
    assert len(listing) == 3

    log.compact("orders", _names(log))  # ... another writer compacts them ...
    assert len(log.segment_files("orders")) == 1
    assert _query(listing) == expected  # ... and the reader still reads the old files.
    assert _query(log.segment_files("orders")) == expected

    # Another process opening the log does not take them for a crash's leftovers.
    other = EventLog(tmp_path / "log", compaction_grace_s=60, wall_clock=clock)
    assert all(f.exists() for f in listing)
    assert other.remove_superseded() == 0
    other.close()

    clock.now += 61  # once the grace period is over, they go
    assert log.remove_superseded() == 3
    assert not any(f.exists() for f in listing)
    assert sorted(p.name for p in (tmp_path / "log" / "segments" / "orders").iterdir()) == [
        log.segment_files("orders")[0].name
    ]
    assert _query(log.segment_files("orders")) == expected
    log.close()


def test_a_later_compaction_or_open_removes_expired_files(tmp_path: Path) -> None:
    clock = FakeClock()
    log = EventLog(tmp_path / "log", compaction_grace_s=60, wall_clock=clock)
    for batch in (["a"], ["b"]):
        _append(log, batch)
    first = log.segment_files("orders")
    log.compact("orders", _names(log))
    clock.now += 30
    for batch in (["c"], ["d"]):
        _append(log, batch)
    second = [f for f in log.segment_files("orders") if f not in first]
    log.compact("orders", _names(log))
    assert all(f.exists() for f in first + second)  # both still within their grace period

    clock.now += 31  # the first compaction's files expire; the second's do not
    _append(log, ["x"])
    log.compact("orders", _names(log))
    assert not any(f.exists() for f in first)
    assert all(f.exists() for f in second)
    log.close()

    clock.now += 60
    reopened = EventLog(tmp_path / "log", compaction_grace_s=60, wall_clock=clock)
    assert not any(f.exists() for f in second)
    table = reopened.read("orders")
    assert table is not None
    assert table.column("event_id").to_pylist() == ["a", "b", "c", "d", "x"]
    reopened.close()


def test_the_grace_period_is_set_in_the_project_file(tmp_path: Path) -> None:
    (tmp_path / "definitions.py").write_text("")
    (tmp_path / "crmfs.yaml").write_text("project: p\nevent_log: {compaction_grace: 2h}\n")
    store = FeatureStore(tmp_path)
    assert store.log.compaction_grace_s == 7200
    store.close()
    (tmp_path / "crmfs.yaml").write_text("project: p\nevent_log: {compaction_grace: soon}\n")
    with pytest.raises(ConfigError, match=r"event_log\.compaction_grace: not a duration: 'soon'"):
        FeatureStore(tmp_path)


def test_tiny_segments_merge_among_themselves(tmp_path: Path) -> None:
    """Single-event ingests merge cheaply: the batch segments stay as they are."""
    log = EventLog(tmp_path / "log")
    for batch in range(3):
        _append(log, [f"b{batch}-{i}" for i in range(2_000)])  # batch-sized segments
    big = set(_names(log))
    for i in range(49):  # one more tiny segment than the tier holds
        _append(log, [f"t{i}"])
    names = _names(log)
    assert big <= set(names)  # untouched
    tiny = [name for name in names if name not in big]
    assert len(tiny) == 1  # the 49 tiny segments became one
    stored = log.read("orders")
    assert stored is not None
    assert stored.num_rows == 3 * 2_000 + 49
    assert stored[SEQ].to_pylist() == list(range(1, 3 * 2_000 + 50))
    log.close()


def test_two_writers_compacting_the_same_files_store_each_event_once(tmp_path: Path) -> None:
    clock = FakeClock()
    log = EventLog(tmp_path / "log", compaction_grace_s=60, wall_clock=clock)
    other = EventLog(tmp_path / "log", compaction_grace_s=60, wall_clock=clock)
    for batch in (["a", "b"], ["c"], ["d", "e"]):
        _append(log, batch)
    files = _names(log)  # both writers chose the same files to merge
    log.compact("orders", files)
    other.compact("orders", files)  # gives way: they are no longer live
    other.compact("orders", files[:2])
    table = log.read("orders")
    assert table is not None
    assert sorted(table["event_id"].to_pylist()) == ["a", "b", "c", "d", "e"]
    assert len(log.segment_files("orders")) == 1
    other.close()


def test_event_ids_with_nul_characters_are_kept_whole(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "log")
    _append(log, ["a\x00b", "a\x00c", "a"])
    events = pa.table({"event_id": ["a\x00b", "a\x00d"], "qty": [0, 1], EVENT_TIME: [1_000] * 2})
    result = log.append("orders", events, ["a\x00b", "a\x00d"], [], now=2_000)
    assert result.duplicates == 1
    table = log.read("orders")
    assert table is not None
    assert table["event_id"].to_pylist() == ["a\x00b", "a\x00c", "a", "a\x00d"]


def test_a_failed_compaction_does_not_fail_the_committed_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    log = EventLog(tmp_path / "log")

    def broken(source: str, files: list[str]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(log, "compact", broken)
    for i in range(60):  # enough tiny segments to ask for a compaction
        _append(log, [f"e{i}"])
    assert "compaction of 'orders' failed: disk full" in caplog.text
    table = log.read("orders")
    assert table is not None
    assert table.num_rows == 60
