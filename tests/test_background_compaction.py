"""Compaction in a thread: the same merge as in the append, and a staged file that another
process's orphan removal deleted only drops that compaction."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from crmfs.storage.event_log import EVENT_TIME, SEQ, EventLog


def _append(log: EventLog, ids: list[str]) -> None:
    events = pa.table(
        {"event_id": ids, "qty": list(range(len(ids))), EVENT_TIME: [1_000] * len(ids)}
    )
    log.append("orders", events, ids, [], now=2_000)


def _files(log: EventLog) -> list[Path]:
    return log.segment_files("orders")


def test_a_compaction_in_the_background_merges_the_tier(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "log", background_compaction=True)
    for i in range(49):  # one more tiny segment than the tier holds
        _append(log, [f"t{i}"])
    log.wait_for_compaction()
    log.close()
    reopened = EventLog(tmp_path / "log")
    assert len(_files(reopened)) == 1
    stored = reopened.read("orders")
    assert stored is not None
    assert stored[SEQ].to_pylist() == list(range(1, 50))
    assert not list((tmp_path / "log" / "segments").glob("*/*.tmp"))
    reopened.close()


def test_a_staged_file_removed_as_an_orphan_drops_the_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    log = EventLog(tmp_path / "log", background_compaction=True)
    real_stage = EventLog._stage

    def stage_then_lose(self: EventLog, source: str, table: pa.Table) -> tuple[str, Path]:
        name, tmp = real_stage(self, source, table)
        tmp.unlink()  # as another process's orphan removal would, before the swap
        return name, tmp

    monkeypatch.setattr(EventLog, "_stage", stage_then_lose)
    for i in range(49):
        _append(log, [f"t{i}"])
    log.wait_for_compaction()
    log.close()
    assert "compaction of 'orders' failed" in caplog.text
    reopened = EventLog(tmp_path / "log")
    assert len(_files(reopened)) == 49  # the segments as appended, every event kept once
    stored = reopened.read("orders")
    assert stored is not None
    assert stored[SEQ].to_pylist() == list(range(1, 50))
    assert not list((tmp_path / "log" / "segments").glob("*/*.tmp"))
    reopened.close()


def test_a_compaction_that_fails_unexpectedly_leaves_later_ones_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = EventLog(tmp_path / "log", background_compaction=True)
    compactor = log._compactor
    assert compactor is not None
    real = compactor._compact
    calls = {"n": 0}

    def fails_once(source: str, db: object) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("merging a large tier")
        real(source, db)  # type: ignore[arg-type]

    compactor._compact = fails_once  # type: ignore[method-assign]
    _append(log, ["first"])
    log.wait_for_compaction()
    assert "compaction of 'orders' failed: merging a large tier" in caplog.text
    for i in range(48):  # with the first, one more tiny segment than the tier holds
        _append(log, [f"t{i}"])
    log.wait_for_compaction()  # returns: the thread lives on
    assert len(_files(log)) == 1
    log.close()


def test_closing_runs_the_compaction_an_append_made_due(tmp_path: Path) -> None:
    """A process that ingests once and exits still compacts (the CLI does just that)."""
    for i in range(49):
        log = EventLog(tmp_path / "log", background_compaction=True)
        _append(log, [f"t{i}"])
        log.close()
    reopened = EventLog(tmp_path / "log")
    assert len(_files(reopened)) == 1
    reopened.close()
