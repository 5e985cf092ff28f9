"""The in-process read cache: hits without a round trip, a write by another store seen at
once, entries never served past their TTL, the read/notice race, the size bound, the
watermark read alone, and reads straight through without a (connected) change feed. Real
Redis and SQLite stores; wrappers only count calls or act between a read and its fill."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crmfs.errors import BackendUnavailable, ConfigError
from crmfs.serving.cache import CachedReads
from crmfs.storage.ports import (
    ChangeFeed,
    ChangeListener,
    ChangeNotice,
    EntityKey,
    OnlineStore,
    Watermark,
)
from crmfs.storage.redis_connection import RedisSettings
from crmfs.storage.redis_online import RedisOnlineStore
from crmfs.storage.sqlite_online import SqliteOnlineStore
from tests.storage.redis_servers import (
    SHARED_URL,
    ThrowawayRedis,
)

DEADLINE_S = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RelayedFeed:
    """A store's real feed, telling the test after the cache has taken each notice."""

    def __init__(self, feed: ChangeFeed) -> None:
        self.feed = feed
        self.relayed: list[ChangeNotice | None] = []
        self.condition = threading.Condition()

    @property
    def connected(self) -> bool:
        return self.feed.connected

    def start(self, listener: ChangeListener) -> None:
        def relay(notice: ChangeNotice | None) -> None:
            listener(notice)
            with self.condition:
                self.relayed.append(notice)
                self.condition.notify_all()

        self.feed.start(relay)

    def wait_for(self, wanted: Callable[[ChangeNotice | None], bool]) -> None:
        with self.condition:
            if not self.condition.wait_for(
                lambda: any(wanted(notice) for notice in self.relayed), DEADLINE_S
            ):
                pytest.fail(f"no such notice within {DEADLINE_S} s: {self.relayed}")

    def close(self) -> None:
        self.feed.close()


class Counted:
    """A real store whose reads are counted; ``between`` runs after a read returned and
    before the cache gets its result."""

    def __init__(self, store: OnlineStore, feed: bool = True) -> None:
        self.store = store
        self.reads: list[list[tuple[str, list[EntityKey]]]] = []
        self.watermarks = 0
        self.between: Callable[[], None] | None = None
        self.feed: RelayedFeed | None = None
        if feed:
            self.change_feed = self._change_feed

    def read_views(self, reads: Any) -> Any:
        self.reads.append([(table, list(keys)) for table, keys in reads])
        result = self.store.read_views(reads)
        if self.between is not None:
            self.between()
        return result

    def watermark(self) -> Watermark:
        self.watermarks += 1
        return self.store.watermark()

    def _change_feed(self) -> RelayedFeed:
        self.feed = RelayedFeed(self.store.change_feed())  # type: ignore[attr-defined]
        return self.feed


@pytest.fixture(params=["redis", "sqlite"])
def two_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[OnlineStore, OnlineStore]]:
    """A store to read through the cache and another client of the same data, to write."""
    if request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        stores: list[Any] = [RedisOnlineStore(RedisSettings(SHARED_URL), prefix) for _ in "ab"]
    else:
        stores = [SqliteOnlineStore(tmp_path / "online.db") for _ in "ab"]
    yield stores[0], stores[1]
    for store in stores:
        store.close()


@pytest.fixture
def redis_stores(redis_prefix: str) -> Iterator[tuple[RedisOnlineStore, RedisOnlineStore]]:
    stores = [RedisOnlineStore(RedisSettings(SHARED_URL), redis_prefix) for _ in "ab"]
    yield stores[0], stores[1]
    for store in stores:
        store.close()


@pytest.fixture
def cached() -> Iterator[Callable[..., CachedReads]]:
    """Makes caches, all closed after the test."""
    made: list[CachedReads] = []

    def make(store: Any, **options: Any) -> CachedReads:
        cache = CachedReads(store, **options)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} within {DEADLINE_S} s")
        time.sleep(0.001)


def test_hits_after_a_first_read_need_no_round_trip(
    redis_stores: tuple[RedisOnlineStore, RedisOnlineStore], cached: Callable[..., CachedReads]
) -> None:
    reader, writer = redis_stores
    writer.write({"t": {1: b"a", "x": b"b"}, "u": {1: b"c"}}, Watermark(7, 70))
    store = Counted(reader)
    cache = cached(store)
    assert cache.enabled
    assert cache.connected
    reads = [("t", [1, "x", "nobody"]), ("u", [1])]
    expected = (Watermark(7, 70), [[b"a", b"b", None], [b"c"]])
    assert cache.read_views(reads) == expected
    assert (cache.hits, cache.misses, len(store.reads)) == (0, 4, 1)
    assert cache.read_views(reads) == expected  # absent keys are cached too
    assert cache.read_views([("t", ["x"])]) == (Watermark(7, 70), [[b"b"]])
    assert (cache.hits, cache.misses, len(store.reads), store.watermarks) == (5, 4, 1, 0)
    assert cache.entries == 4
    assert cache.read_views([("t", [1, 2]), ("u", [])]) == (Watermark(7, 70), [[b"a", None], []])
    assert store.reads[-1] == [("t", [2])]  # only the key missed is read


def test_a_write_by_another_store_is_seen_at_once(
    two_stores: tuple[OnlineStore, OnlineStore], cached: Callable[..., CachedReads]
) -> None:
    reader, writer = two_stores
    writer.write({"t": {1: b"a", 2: b"b"}}, Watermark(1, 1))
    cache = cached(reader, ttl_s=60.0)  # only a notice can explain a new value
    assert cache.read_views([("t", [1, 2, 3])]) == (Watermark(1, 1), [[b"a", b"b", None]])
    for seq, blob in enumerate([b"c", b"d", b"e"], start=2):
        writer.write({"t": {1: blob, 3: blob}}, Watermark(seq, seq))
        eventually(
            lambda seq=seq, blob=blob: (
                cache.read_views([("t", [1, 2, 3])])  # type: ignore[misc]
                == (Watermark(seq, seq), [[blob, b"b", blob]])
            ),
            f"write {seq} seen",
        )
    assert cache.hits > 0


def test_entries_are_not_served_ttl_s_after_their_read(
    redis_stores: tuple[RedisOnlineStore, RedisOnlineStore], cached: Callable[..., CachedReads]
) -> None:
    reader, writer = redis_stores
    writer.write({"t": {1: b"a"}}, Watermark(1, 1))
    clock = Clock()
    store = Counted(reader)
    cache = cached(store, ttl_s=1.0, clock=clock)
    cache.read_views([("t", [1])])
    clock.now += 0.999
    cache.read_views([("t", [1])])
    assert (len(store.reads), store.watermarks) == (1, 0)
    clock.now += 0.001  # a second after the first read began
    assert cache.read_views([("t", [1])]) == (Watermark(1, 1), [[b"a"]])
    assert (len(store.reads), cache.hits, cache.misses) == (2, 1, 2)
    clock.now += 0.5
    cache.read_views([("t", [1])])
    assert len(store.reads) == 2  # filled again by the second read


def test_a_write_noticed_between_a_read_and_its_fill_is_not_hidden(
    redis_stores: tuple[RedisOnlineStore, RedisOnlineStore], cached: Callable[..., CachedReads]
) -> None:
    reader, writer = redis_stores
    writer.write({"t": {1: b"old", 2: b"two"}}, Watermark(1, 1))
    store = Counted(reader)
    cache = cached(store, ttl_s=60.0)

    def write_and_wait_for_its_notice() -> None:
        store.between = None
        writer.write({"t": {1: b"new"}}, Watermark(2, 2))
        assert store.feed is not None
        store.feed.wait_for(lambda notice: notice is not None and ("t", 1) in notice.states)

    store.between = write_and_wait_for_its_notice
    assert cache.read_views([("t", [1, 2])]) == (Watermark(1, 1), [[b"old", b"two"]])
    # The blob read before the write was not cached, nor the watermark; key 2 was.
    assert cache.read_views([("t", [1, 2])]) == (Watermark(2, 2), [[b"new", b"two"]])
    assert store.reads[-1] == [("t", [1])]
    assert cache.read_views([("t", [1, 2])]) == (Watermark(2, 2), [[b"new", b"two"]])
    assert len(store.reads) == 2


def test_only_the_watermark_is_read_again_when_only_the_marks_moved(
    redis_stores: tuple[RedisOnlineStore, RedisOnlineStore], cached: Callable[..., CachedReads]
) -> None:
    reader, writer = redis_stores
    writer.write({"t": {1: b"a"}}, Watermark(1, 1))
    store = Counted(reader)
    cache = cached(store, ttl_s=60.0)
    cache.read_views([("t", [1])])
    writer.write({}, Watermark(2, 20))
    eventually(
        lambda: cache.read_views([("t", [1])]) == (Watermark(2, 20), [[b"a"]]),
        "the new watermark served",
    )
    assert len(store.reads) == 1
    assert store.watermarks >= 1
    watermarks = store.watermarks
    cache.read_views([("t", [1])])
    assert store.watermarks == watermarks  # and kept


def test_the_cache_keeps_at_most_max_entries_the_latest_filled(
    redis_stores: tuple[RedisOnlineStore, RedisOnlineStore], cached: Callable[..., CachedReads]
) -> None:
    reader, writer = redis_stores
    writer.write({"t": {key: b"%d" % key for key in range(30)}}, Watermark(1, 1))
    store = Counted(reader)
    cache = cached(store, max_entries=10)
    for key in range(30):
        cache.read_views([("t", [key])])
        assert cache.entries <= 10
    assert cache.read_views([("t", list(range(20, 30)))])[1] == [[b"%d" % k for k in range(20, 30)]]
    assert len(store.reads) == 30  # the last ten filled were kept
    # More than fit: all served; 20-29 were hits, 0-19 filled now: the last filled stay.
    assert cache.read_views([("t", list(range(25)))])[1] == [[b"%d" % k for k in range(25)]]
    assert cache.entries == 10
    assert cache.read_views([("t", list(range(10, 20)))])[1] == [[b"%d" % k for k in range(10, 20)]]
    assert len(store.reads) == 31


def test_a_store_without_a_change_feed_is_read_straight_through(
    redis_stores: tuple[RedisOnlineStore, RedisOnlineStore], cached: Callable[..., CachedReads]
) -> None:
    reader, writer = redis_stores
    writer.write({"t": {1: b"a"}}, Watermark(1, 1))
    store = Counted(reader, feed=False)
    cache = cached(store)
    assert not cache.enabled
    assert not cache.connected
    for _ in range(3):
        assert cache.read_views([("t", [1, 2])]) == (Watermark(1, 1), [[b"a", None]])
    assert (len(store.reads), cache.hits, cache.misses, cache.entries) == (3, 0, 6, 0)


def test_nothing_is_served_from_the_cache_while_its_feed_is_lost(
    tmp_path: Path, cached: Callable[..., CachedReads]
) -> None:
    server = ThrowawayRedis(tmp_path)
    server.start()
    try:
        settings = RedisSettings(server.url, retries=0, backoff_s=0.01, timeout_s=1)
        store = RedisOnlineStore(settings, "p")
        store.write({"t": {1: b"a"}}, Watermark(1, 1))
        cache = cached(store, ttl_s=60.0)
        cache.read_views([("t", [1])])
        cache.read_views([("t", [1])])
        assert cache.hits == 1
        server.kill()
        eventually(lambda: not cache.connected, "the feed's loss noticed")
        assert cache.entries == 0
        with pytest.raises(BackendUnavailable):  # read through, never from a stale copy
            cache.read_views([("t", [1])])
        server.start()  # empty: the cached blob is gone from Redis too
        eventually(lambda: cache.connected, "the feed back")
        assert cache.read_views([("t", [1])]) == (Watermark(), [[None]])
        assert cache.read_views([("t", [1])]) == (Watermark(), [[None]])
        assert cache.hits == 2
        store.close()
    finally:
        server.kill()


def test_invalidate_drops_what_it_names(
    redis_stores: tuple[RedisOnlineStore, RedisOnlineStore], cached: Callable[..., CachedReads]
) -> None:
    reader, writer = redis_stores
    writer.write({"t": {1: b"a", 2: b"b"}}, Watermark(1, 1))
    store = Counted(reader)
    cache = cached(store, ttl_s=60.0)
    cache.read_views([("t", [1, 2])])
    cache.invalidate(ChangeNotice((("t", 1),)))
    cache.read_views([("t", [1, 2])])
    assert (store.reads[-1], store.watermarks) == ([("t", [1])], 0)
    cache.invalidate(ChangeNotice(marks=True))
    cache.read_views([("t", [1, 2])])
    assert (len(store.reads), store.watermarks) == (2, 1)
    cache.invalidate()
    assert cache.entries == 0


def test_readers_in_threads_see_the_last_write(
    redis_stores: tuple[RedisOnlineStore, RedisOnlineStore], cached: Callable[..., CachedReads]
) -> None:
    reader, writer = redis_stores
    keys = list(range(50))
    writer.write({"t": dict.fromkeys(keys, b"0")}, Watermark(0, 0))
    cache = cached(reader, ttl_s=60.0)
    stop = threading.Event()
    failures: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                cache.read_views([("t", keys)])
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for seq in range(1, 40):
        writer.write({"t": dict.fromkeys(keys[seq % 5 :: 5], b"%d" % seq)}, Watermark(seq, 0))
    last = writer.read("t", keys)
    eventually(lambda: cache.read_views([("t", keys)]) == (Watermark(39, 0), [last]), "last")
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert cache.hits > 0


@pytest.mark.parametrize(("option", "value"), [("max_entries", 0), ("ttl_s", 0.0)])
def test_bad_options_are_refused(option: str, value: float, tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path / "online.db")
    with pytest.raises(ConfigError, match=option):
        CachedReads(store, **{option: value})  # type: ignore[arg-type]
    store.close()
