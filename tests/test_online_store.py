"""The SQLite online store: per-table storage and a blob cache that never serves stale state."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from crmfs.errors import StorageError
from crmfs.storage.ports import Watermark, WatermarkMoved
from crmfs.storage.sqlite_online import SqliteOnlineStore


def test_read_sees_writes_of_another_connection(tmp_path: Path) -> None:
    writer = SqliteOnlineStore(tmp_path / "online.db")
    reader = SqliteOnlineStore(tmp_path / "online.db")
    writer.write({"v__v1": {"a": b"1"}}, Watermark(1, 10))
    assert reader.read("v__v1", ["a", "b"]) == [b"1", None]  # now cached, absence included
    writer.write({"v__v1": {"a": b"2", "b": b"3"}}, Watermark(2, 20))
    assert reader.read("v__v1", ["a", "b"]) == [b"2", b"3"]
    writer.replace_table("v__v1", {"c": b"4"}, Watermark(2, 20))
    assert reader.read("v__v1", ["a", "c"]) == [None, b"4"]
    writer.drop_table("v__v1")
    assert reader.read("v__v1", ["c"]) == [None]


def test_the_watermark_kept_between_reads_follows_every_commit(tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path / "online.db")
    other = SqliteOnlineStore(tmp_path / "online.db")
    assert store.watermark() == other.watermark() == Watermark()
    store.write({"t": {1: b"x"}}, Watermark(1, 10), expected=Watermark())
    assert store.watermark() == other.watermark() == Watermark(1, 10)
    other.write({"t": {1: b"y"}}, Watermark(2, 20), expected=Watermark(1, 10))
    assert store.watermark() == Watermark(2, 20)
    with pytest.raises(WatermarkMoved):  # checked inside the write, then the write is undone
        store.write({"t": {1: b"z"}}, Watermark(3, 30), expected=Watermark(1, 10))
    assert store.watermark() == other.watermark() == Watermark(2, 20)
    store.write({"t": {2: b"w"}})  # a write without a watermark keeps it
    assert store.watermark() == Watermark(2, 20)


def test_a_write_under_a_moved_watermark_changes_nothing(tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path / "online.db")
    other = SqliteOnlineStore(tmp_path / "online.db")
    store.write({"t": {1: b"x"}}, Watermark(1, 1), expected=Watermark())
    other.write({"t": {1: b"y"}}, Watermark(2, 2), expected=Watermark(1, 1))
    with pytest.raises(WatermarkMoved):
        store.write({"t": {1: b"z"}}, Watermark(2, 2), expected=Watermark(1, 1))
    assert store.read("t", [1]) == [b"y"]
    assert store.tables() == {"t": 1}


def test_rows_of_the_shared_table_of_earlier_versions_are_moved(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "online.db")
    db.execute(
        "CREATE TABLE state (tbl TEXT NOT NULL, key ANY NOT NULL, value BLOB NOT NULL,"
        " PRIMARY KEY (tbl, key)) STRICT, WITHOUT ROWID"
    )
    db.executemany("INSERT INTO state VALUES (?, ?, ?)", [("a__v1", "k", b"1"), ("b__v2", 7, b"2")])
    db.commit()
    db.close()
    store = SqliteOnlineStore(tmp_path / "online.db")
    assert store.tables() == {"a__v1": 1, "b__v2": 1}
    assert store.read("b__v2", [7]) == [b"2"]


def test_the_cache_stays_within_its_budget(tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path / "online.db", cache_bytes=10_000)
    store.write({"t": dict.fromkeys(range(100), b"x" * 50)}, Watermark(1, 1))
    assert store.read("t", list(range(1000, 1200))) == [None] * 200  # unknown keys
    assert store.read("t", [5]) == [b"x" * 50]
    assert store._cached_bytes <= 10_000


def test_threads_sharing_the_store_lose_no_update(tmp_path: Path) -> None:
    """Read-modify-write under the watermark from several threads: every increment lands.

    A thread that sees a new watermark must also see the blobs written with it (the cache
    is filled before the process lock is let go)."""
    store = SqliteOnlineStore(tmp_path / "online.db")
    increments_per_thread = 150

    def increment() -> None:
        done = 0
        while done < increments_per_thread:
            mark = store.watermark()
            [blob] = store.read("t", ["k"])
            count = 0 if blob is None else int(blob)
            try:
                store.write({"t": {"k": b"%d" % (count + 1)}}, Watermark(mark.seq + 1, 0), mark)
            except WatermarkMoved:
                continue
            done += 1

    threads = [threading.Thread(target=increment) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.read("t", ["k"]) == [b"%d" % (4 * increments_per_thread)]
    assert store.watermark().seq == 4 * increments_per_thread


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"a": b"1", "b": b"2", "c": b"3"}, {"b": b"20", "d": b"40"}),
        ({1: b"1", 2: b"2", 3: b"3"}, {2: b"20", 4: b"40"}),
        ({"a\x00x": b"1", "a": b"2"}, {"a\x00y": b"3", "a": b"20"}),  # keys JSON cannot carry
    ],
)
def test_replacing_a_table_keeps_exactly_the_new_rows(
    tmp_path: Path, old: dict[Any, bytes], new: dict[Any, bytes]
) -> None:
    store = SqliteOnlineStore(tmp_path / "online.db")
    store.write({"t": old}, Watermark(1, 0))
    store.replace_table("t", new, Watermark(1, 0))
    every = list(old) + list(new)
    expected = [new.get(key) for key in every]
    assert store.read("t", every) == expected
    other = SqliteOnlineStore(tmp_path / "online.db")  # what the file holds, past any cache
    assert other.read("t", every) == expected
    assert store.tables() == {"t": len(new)}


def test_a_staged_write_is_seen_by_others_only_once_committed(tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path / "online.db")
    other = SqliteOnlineStore(tmp_path / "online.db")
    store.write({"t": {1: b"a"}}, Watermark(1, 1))
    staged = store.begin_write(expected=Watermark(1, 1))
    staged.add({"t": {1: b"b"}})
    staged.add({"t": {2: b"c"}, "u": {3: b"d"}})
    assert other.read("t", [1, 2]) == [b"a", None]
    assert other.watermark() == Watermark(1, 1)
    staged.commit(Watermark(2, 2))
    assert other.read("t", [1, 2]) == [b"b", b"c"]
    assert other.read("u", [3]) == [b"d"]
    assert store.read("t", [1, 2]) == [b"b", b"c"]  # from its cache, filled on commit
    assert other.watermark() == store.watermark() == Watermark(2, 2)
    with pytest.raises(StorageError, match="already committed"):
        staged.add({"t": {1: b"x"}})


def test_an_aborted_staged_write_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path / "online.db")
    other = SqliteOnlineStore(tmp_path / "online.db")
    store.write({"t": {1: b"a"}}, Watermark(1, 1))
    staged = store.begin_write(expected=Watermark(1, 1))
    staged.add({"t": {1: b"b", 2: b"c"}})
    staged.abort()
    staged.abort()  # idempotent
    assert store.read("t", [1, 2]) == other.read("t", [1, 2]) == [b"a", None]
    assert store.watermark() == Watermark(1, 1)
    # The store is free again, for this thread and for others.
    done = threading.Event()
    thread = threading.Thread(
        target=lambda: (store.write({"t": {2: b"e"}}, Watermark(2, 2)), done.set())
    )
    thread.start()
    thread.join(10)
    assert done.is_set()
    assert other.read("t", [2]) == [b"e"]


def test_a_staged_write_under_a_moved_watermark_is_refused(tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path / "online.db")
    other = SqliteOnlineStore(tmp_path / "online.db")
    store.write({"t": {1: b"a"}}, Watermark(1, 1))
    other.write({"t": {1: b"b"}}, Watermark(2, 2))
    with pytest.raises(WatermarkMoved):
        store.begin_write(expected=Watermark(1, 1))
    staged = other.begin_write(expected=Watermark(2, 2))  # the refused one holds nothing
    staged.commit(Watermark(3, 3))
    assert store.watermark() == Watermark(3, 3)
