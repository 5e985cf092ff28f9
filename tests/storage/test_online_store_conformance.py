"""The online store port (``crmfs.storage.ports.OnlineStore``): one suite, every adapter.

Each test runs once on SQLite and once on Redis (``open_store`` in conftest), unchanged.
``open_store()`` gives another client of the same data, as another process would have.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from crmfs.errors import StorageError
from crmfs.storage.ports import Watermark, WatermarkMoved
from tests.storage.conftest import OpenStore


def test_reads_return_what_was_written_in_order_and_none_for_missing_keys(
    open_store: OpenStore,
) -> None:
    store = open_store()
    assert store.read("t", ["a"]) == [None]  # a table never written
    assert store.read("t", []) == []
    store.write({"t": {"a": b"1", "b": b"2"}, "u": {"a": b"3"}})
    assert store.read("t", ["b", "missing", "a", "b"]) == [b"2", None, b"1", b"2"]
    assert store.read("u", ["a", "b"]) == [b"3", None]
    store.write({"t": {"a": b"10"}})  # an overwrite; b is kept
    assert open_store().read("t", ["a", "b"]) == [b"10", b"2"]


@pytest.mark.parametrize(
    ("keys", "distinct"),
    [
        ([1, "1", 2, "2"], [b"int 1", b"str 1", b"int 2", b"str 2"]),
        (["a:b", "a\x00b", "", "{x}", "é 😀", "*?[]"], [b"1", b"2", b"3", b"4", b"5", b"6"]),
        ([-5, 0, 2**62, 7], [b"1", b"2", b"3", b"4"]),
    ],
)
def test_int_and_str_keys_are_distinct_and_any_string_is_a_key(
    open_store: OpenStore, keys: list[Any], distinct: list[bytes]
) -> None:
    store = open_store()
    store.write({"t": dict(zip(keys, distinct, strict=True))})
    assert open_store().read("t", keys) == distinct
    assert store.read("t", [str(keys[0]) + "x"]) == [None]


def test_a_write_of_several_tables_and_the_watermark_is_one_step(open_store: OpenStore) -> None:
    store, other = open_store(), open_store()
    assert store.watermark() == Watermark()
    store.write({"t": {1: b"a"}, "u": {2: b"b"}}, Watermark(5, 50), expected=Watermark())
    assert other.watermark() == Watermark(5, 50)
    assert (other.read("t", [1]), other.read("u", [2])) == ([b"a"], [b"b"])
    store.write({"t": {1: b"c"}})  # without a watermark: the watermark stays
    assert other.watermark() == Watermark(5, 50)


def test_a_write_under_a_moved_watermark_raises_and_writes_nothing(open_store: OpenStore) -> None:
    store, other = open_store(), open_store()
    store.write({"t": {1: b"a"}, "u": {1: b"x"}}, Watermark(1, 10))
    other.write({"t": {1: b"b"}}, Watermark(2, 20), expected=Watermark(1, 10))
    with pytest.raises(WatermarkMoved) as moved:
        store.write({"t": {1: b"c", 2: b"d"}, "u": {1: b"y"}}, Watermark(3, 30), Watermark(1, 10))
    assert (moved.value.expected, moved.value.current) == (Watermark(1, 10), Watermark(2, 20))
    assert store.read("t", [1, 2]) == [b"b", None]
    assert store.read("u", [1]) == [b"x"]
    assert store.watermark() == Watermark(2, 20)


def test_concurrent_read_modify_writes_under_the_watermark_lose_no_update(
    open_store: OpenStore,
) -> None:
    stores = [open_store() for _ in range(3)]
    per_writer = 40

    def increment(store: Any) -> None:
        done = 0
        while done < per_writer:
            mark = store.watermark()
            [blob] = store.read("t", ["k"])
            count = 0 if blob is None else int(blob)
            try:
                store.write({"t": {"k": b"%d" % (count + 1)}}, Watermark(mark.seq + 1, 0), mark)
            except WatermarkMoved:
                continue
            done += 1

    threads = [threading.Thread(target=increment, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stores[0].read("t", ["k"]) == [b"%d" % (3 * per_writer)]
    assert stores[0].watermark().seq == 3 * per_writer


def test_a_staged_write_is_visible_only_once_committed(open_store: OpenStore) -> None:
    store, other = open_store(), open_store()
    store.write({"t": {1: b"a"}}, Watermark(1, 1))
    staged = store.begin_write(expected=Watermark(1, 1))
    staged.add({"t": {1: b"b"}})
    staged.add({"t": {2: b"c"}, "u": {3: b"d"}})
    assert store.read("t", [2]) == [b"c"]  # the writing thread sees its blobs
    assert other.read("t", [1, 2]) == [b"a", None]
    assert other.read("u", [3]) == [None]
    assert other.watermark() == Watermark(1, 1)
    staged.commit(Watermark(2, 2))
    assert other.read("t", [1, 2]) == [b"b", b"c"]
    assert other.read("u", [3]) == [b"d"]
    assert other.watermark() == store.watermark() == Watermark(2, 2)
    with pytest.raises(StorageError, match="already committed"):
        staged.add({"t": {1: b"x"}})
    with pytest.raises(StorageError, match="already committed"):
        staged.commit()


def test_the_writing_thread_reads_its_staged_blobs_over_states_it_read_before(
    open_store: OpenStore,
) -> None:
    """The port says the thread of an open staged write reads the blobs added so far."""
    store = open_store()
    store.write({"t": {1: b"a"}})
    assert store.read("t", [1]) == [b"a"]
    staged = store.begin_write()
    staged.add({"t": {1: b"b"}})
    try:
        assert store.read("t", [1, 2]) == [b"b", None]
    finally:
        staged.abort()
    assert store.read("t", [1]) == [b"a"]  # aborted: the cached state again


def test_an_aborted_staged_write_leaves_the_store_as_it_was(open_store: OpenStore) -> None:
    store, other = open_store(), open_store()
    store.write({"t": {1: b"a"}}, Watermark(1, 1))
    staged = store.begin_write(expected=Watermark(1, 1))
    staged.add({"t": {1: b"b", 2: b"c"}})
    staged.abort()
    staged.abort()  # idempotent
    assert store.read("t", [1, 2]) == other.read("t", [1, 2]) == [b"a", None]
    assert store.watermark() == Watermark(1, 1)
    done = threading.Event()  # the store is free again, for other threads and clients

    def write() -> None:
        other.write({"t": {2: b"e"}}, Watermark(2, 2))
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(10)
    assert done.is_set()
    assert store.read("t", [2]) == [b"e"]


def test_other_writers_wait_for_a_staged_write(open_store: OpenStore) -> None:
    store, other = open_store(), open_store()
    staged = store.begin_write(expected=Watermark())
    staged.add({"t": {1: b"staged"}})
    done = threading.Event()

    def write() -> None:
        other.write({"t": {1: b"after"}})
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(0.3)
    assert not done.is_set()
    staged.commit(Watermark(1, 1))
    thread.join(10)
    assert done.is_set()
    assert other.read("t", [1]) == [b"after"]
    assert other.watermark() == Watermark(1, 1)


def test_a_staged_write_under_a_moved_watermark_is_refused(open_store: OpenStore) -> None:
    store, other = open_store(), open_store()
    store.write({"t": {1: b"a"}}, Watermark(1, 1))
    other.write({"t": {1: b"b"}}, Watermark(2, 2))
    with pytest.raises(WatermarkMoved):
        store.begin_write(expected=Watermark(1, 1))
    staged = other.begin_write(expected=Watermark(2, 2))  # the refused one holds nothing
    staged.commit(Watermark(3, 3))
    assert store.watermark() == Watermark(3, 3)
    store.write({"t": {1: b"c"}})  # nor does it hold the refused client
    assert other.read("t", [1]) == [b"c"]


def test_identity_changes_store_blobs_delete_states_and_move_the_identity_mark(
    open_store: OpenStore,
) -> None:
    store, other = open_store(), open_store()
    assert store.identity_mark() == 0
    store.write({"t": {"g1": b"a", "g2": b"b"}, "u": {"g1": b"c"}}, Watermark(4, 40))
    store.apply_identity({"t": {"g1": b"a+b", "g2": None}, "u": {"g1": None, "g3": b"d"}}, 7)
    assert other.identity_mark() == 7
    assert other.read("t", ["g1", "g2"]) == [b"a+b", None]
    assert other.read("u", ["g1", "g3"]) == [None, b"d"]
    assert other.watermark() == Watermark(4, 40)  # the stream watermark is another mark
    store.apply_identity({}, 9)
    assert other.identity_mark() == 9
    store.write({"t": {"g1": b"x"}}, Watermark(5, 50))
    assert other.identity_mark() == 9


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"a": b"1", "b": b"2", "c": b"3"}, {"b": b"20", "d": b"40"}),
        ({1: b"1", 2: b"2", 3: b"3"}, {2: b"20", 4: b"40"}),
        ({"a": b"1"}, {}),
    ],
)
def test_replacing_a_table_keeps_exactly_the_new_rows(
    open_store: OpenStore, old: dict[Any, bytes], new: dict[Any, bytes]
) -> None:
    store, other = open_store(), open_store()
    store.write({"t": old, "u": {"a": b"kept"}}, Watermark(1, 0))
    assert other.read("t", list(old)) == list(old.values())  # seen before the replacement
    store.replace_table("t", new, Watermark(1, 0))
    every = list(old) + list(new)
    expected = [new.get(key) for key in every]
    assert store.read("t", every) == expected
    assert other.read("t", every) == expected
    assert other.read("u", ["a"]) == [b"kept"]
    assert other.watermark() == Watermark(1, 0)
    other.write({"t": {"z": b"after"}})  # a client that saw the old table writes the new one
    assert store.read("t", ["z", *new]) == [b"after", *new.values()]


def test_a_replacement_computed_under_an_older_watermark_is_refused(
    open_store: OpenStore,
) -> None:
    store, other = open_store(), open_store()
    store.write({"t": {"a": b"1"}}, Watermark(1, 10))
    other.write({"t": {"a": b"2"}}, Watermark(2, 20))
    with pytest.raises(WatermarkMoved):
        store.replace_table("t", {"b": b"3"}, Watermark(1, 10))
    assert other.read("t", ["a", "b"]) == [b"2", None]
    store.replace_table("t", {"b": b"3"}, Watermark(2, 20))
    assert other.read("t", ["a", "b"]) == [None, b"3"]


def test_a_dropped_table_is_empty_and_can_be_written_again(open_store: OpenStore) -> None:
    store, other = open_store(), open_store()
    store.write({"t": {"a": b"1"}, "u": {"a": b"2"}}, Watermark(1, 1))
    assert other.read("t", ["a"]) == [b"1"]
    store.drop_table("t")
    store.drop_table("never_written")
    assert other.read("t", ["a"]) == [None]
    assert other.read("u", ["a"]) == [b"2"]
    other.write({"t": {"b": b"3"}})
    assert store.read("t", ["a", "b"]) == [None, b"3"]
    assert store.watermark() == Watermark(1, 1)


def test_large_batches_round_trip(open_store: OpenStore) -> None:
    store, other = open_store(), open_store()
    rows = {key: b"state-%d" % key * 4 for key in range(60_000)}
    store.write({"t": rows, "u": {f"s{key}": b"x" for key in range(20_000)}}, Watermark(1, 1))
    keys = list(range(0, 60_000, 3))
    assert other.read("t", keys) == [rows[key] for key in keys]
    replacement = {key: b"new-%d" % key for key in range(30_000, 70_000)}
    store.replace_table("t", replacement, Watermark(1, 1))
    assert other.read("t", [0, 29_999, 30_000, 69_999]) == [
        None,
        None,
        b"new-30000",
        b"new-69999",
    ]
    staged = store.begin_write(Watermark(1, 1))
    staged.add({"t": dict.fromkeys(range(50000), b"staged")})
    staged.commit(Watermark(2, 2))
    assert other.read("t", [0, 49_999, 50_000]) == [b"staged", b"staged", b"new-50000"]


def test_a_serving_read_gives_every_tables_blobs_and_the_watermark(
    open_store: OpenStore,
) -> None:
    store, other = open_store(), open_store()
    assert store.read_views([("t", ["a"]), ("never", [1])]) == (Watermark(), [[None], [None]])
    other.write({"t": {"a": b"1", "b": b"2"}, "u": {1: b"x"}}, Watermark(3, 30))
    # Tables this client has not read before, and one replaced by another client since.
    assert store.read_views([("t", ["b", "a", "z"]), ("u", [1]), ("never", [2])]) == (
        Watermark(3, 30),
        [[b"2", b"1", None], [b"x"], [None]],
    )
    other.replace_table("t", {"a": b"new"}, Watermark(3, 30))
    other.drop_table("u")
    assert store.read_views([("t", ["a", "b"]), ("u", [1])]) == (
        Watermark(3, 30),
        [[b"new", None], [None]],
    )
    assert store.read_views([]) == (Watermark(3, 30), [])
