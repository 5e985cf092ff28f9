"""The audit log rotates by size, across processes, without losing or splitting a line."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from crmfs.serving.audit import AuditLog


def _write(path: str, writer: int, count: int) -> None:
    log = AuditLog(Path(path), max_bytes=4_000, keep=1_000)
    for n in range(count):
        log.record("masked", writer=writer, n=n, padding="x" * 40)
    log.close()


def test_rotation_by_several_processes_keeps_every_line_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "access.jsonl"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write, args=(str(path), w, 400)) for w in range(3)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    log = AuditLog(path, max_bytes=4_000, keep=1_000)
    files = log.files()
    assert len(files) > 10  # it rotated, many times
    seen = []
    for file in files:
        for line in file.read_text().splitlines():
            record = json.loads(line)  # every line whole
            seen.append((record["writer"], record["n"]))
    assert sorted(seen) == [(w, n) for w in range(3) for n in range(400)]


def test_only_the_newest_files_are_kept(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "access.jsonl", max_bytes=1_000, keep=2)
    for n in range(300):
        log.record("forbidden", n=n)
    files = log.files()
    assert [f.name for f in files] == ["access.jsonl", "access.jsonl.1", "access.jsonl.2"]
    last = [json.loads(line)["n"] for line in files[0].read_text().splitlines()]
    assert last[-1] == 299
    assert log.recent(3)[-1]["n"] == 299
    log.close()
