"""Change feeds: a write by another client of the store is noticed, within a deadline, on
SQLite and on a real Redis (which also names the table and key); replacements and drops say
``None``; a lost Redis connection says ``None`` at once and again once the feed is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from crmfs.storage.ports import ChangeFeed, ChangeNotice, HasChangeFeed, OnlineStore, Watermark
from crmfs.storage.redis_connection import RedisSettings
from crmfs.storage.redis_invalidation import entity_key
from crmfs.storage.redis_keys import entity_bytes
from crmfs.storage.redis_online import RedisOnlineStore
from crmfs.storage.sqlite_online import SqliteOnlineStore
from tests.storage.conftest import OpenStore
from tests.storage.redis_servers import SHARED_URL, ThrowawayRedis

DEADLINE_S = 5.0  # a bound for a notice to come, far above the milliseconds it takes


class Notices:
    """A feed's listener: every notice, with whether the feed said it was connected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[tuple[ChangeNotice | None, bool]] = []
        self.feed: ChangeFeed | None = None

    def __call__(self, notice: ChangeNotice | None) -> None:
        connected = self.feed is not None and self.feed.connected
        with self._lock:
            self.seen.append((notice, connected))

    def start(self, feed: ChangeFeed) -> ChangeFeed:
        self.feed = feed
        feed.start(self)
        return feed

    def taken(self) -> list[tuple[ChangeNotice | None, bool]]:
        """The notices seen since the last call."""
        with self._lock:
            seen, self.seen = self.seen, []
        return seen

    def wait_for(
        self, wanted: Callable[[list[tuple[ChangeNotice | None, bool]]], bool], what: str
    ) -> list[tuple[ChangeNotice | None, bool]]:
        """Wait until the notices seen satisfy ``wanted`` (then taken); fail at the deadline."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            with self._lock:
                seen = list(self.seen)
            if wanted(seen):
                self.taken()
                return seen
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {DEADLINE_S} s; notices seen: {seen}")
            time.sleep(0.001)

    def wait_quiet(self, quiet_s: float = 0.1) -> None:
        """Let notices of earlier writes arrive, then forget them."""
        time.sleep(quiet_s)
        self.taken()


def states_in(seen: list[tuple[ChangeNotice | None, bool]]) -> set[tuple[str, object]]:
    return {state for notice, _ in seen if notice is not None for state in notice.states}


def a_none(seen: list[tuple[ChangeNotice | None, bool]]) -> bool:
    return any(notice is None for notice, _ in seen)


@pytest.fixture
def notices() -> Iterator[Notices]:
    listener = Notices()
    yield listener
    if listener.feed is not None:
        listener.feed.close()


def feed_of(store: OnlineStore, notices: Notices) -> ChangeFeed:
    assert isinstance(store, HasChangeFeed)
    feed = notices.start(store.change_feed())
    assert feed.connected  # ``start`` connects at once when it can
    notices.wait_for(a_none, "first None")
    return feed


def test_both_stores_offer_a_change_feed(open_store: OpenStore) -> None:
    assert isinstance(open_store(), HasChangeFeed)


def test_a_write_by_another_client_is_noticed(open_store: OpenStore, notices: Notices) -> None:
    reader, writer = open_store(), open_store()
    writer.write({"t": {1: b"a"}}, Watermark(1, 1))  # the table exists before the feed
    feed_of(reader, notices)
    writer.write({"t": {1: b"b", "x": b"c"}}, Watermark(2, 2))
    if isinstance(reader, SqliteOnlineStore):  # SQLite cannot say which keys
        notices.wait_for(a_none, "None after a commit")
        return
    seen = notices.wait_for(lambda seen: states_in(seen) >= {("t", 1), ("t", "x")}, "keys")
    assert all(notice is not None and notice.marks for notice, _ in seen)  # one write, one notice


def test_redis_names_each_table_and_key_written(redis_prefix: str, notices: Notices) -> None:
    settings = RedisSettings(SHARED_URL)
    reader, writer = (
        RedisOnlineStore(settings, redis_prefix),
        RedisOnlineStore(settings, redis_prefix),
    )
    writer.write({"orders": {1: b"a"}, "visits": {"1": b"b"}}, Watermark(1, 1))
    feed_of(reader, notices)
    written = {"orders": {1: b"c", 2**40: b"d"}, "visits": {"1": b"e", "Zoë:7": b"f"}}
    writer.write(written, Watermark(2, 2))
    expected = {("orders", 1), ("orders", 2**40), ("visits", "1"), ("visits", "Zoë:7")}
    notices.wait_for(lambda seen: states_in(seen) >= expected, "every key written")
    writer.apply_identity({"orders": {1: None}}, 5)  # a deleted state
    seen = notices.wait_for(lambda seen: ("orders", 1) in states_in(seen), "the deleted key")
    assert states_in(seen) == {("orders", 1)}
    writer.write({}, Watermark(3, 3))  # only the watermark moves
    seen = notices.wait_for(lambda seen: bool(seen), "the marks")
    assert seen == [(ChangeNotice((), marks=True), True)]
    reader.close()
    writer.close()


@pytest.mark.parametrize("change", ["replace", "drop"])
def test_a_replaced_or_dropped_table_says_none(
    open_store: OpenStore, notices: Notices, change: str
) -> None:
    reader, writer = open_store(), open_store()
    writer.write({"t": {1: b"a"}, "u": {1: b"b"}}, Watermark(1, 1))
    feed_of(reader, notices)
    if change == "replace":
        writer.replace_table("t", {2: b"c"}, Watermark(1, 1))
    else:
        writer.drop_table("t")
    notices.wait_for(a_none, f"None after a table {change}")
    if isinstance(reader, RedisOnlineStore):  # and it knows the tables as they are now
        notices.wait_quiet()
        written = {"u": {1: b"e"}} if change == "drop" else {"t": {3: b"d"}, "u": {1: b"e"}}
        writer.write(written, Watermark(2, 2))  # (writing a dropped table makes it again)
        expected = {(table, key) for table, rows in written.items() for key in rows}
        seen = notices.wait_for(lambda seen: states_in(seen) >= expected, "keys")
        assert not a_none(seen)


def test_sqlite_notices_another_store_on_the_same_file(tmp_path: Path, notices: Notices) -> None:
    reader = SqliteOnlineStore(tmp_path / "online.db")
    writer = SqliteOnlineStore(tmp_path / "online.db")
    feed = feed_of(reader, notices)
    for seq in range(1, 4):  # every commit, not only the first
        writer.write({"t": {seq: b"a"}}, Watermark(seq, seq))
        notices.wait_for(a_none, f"None after commit {seq}")
    feed.close()
    writer.write({"t": {9: b"a"}}, Watermark(9, 9))
    notices.wait_quiet()
    assert notices.taken() == []  # closed: no more notices
    reader.close()
    writer.close()


def _feed_clients(prefix: str) -> list[dict[str, object]]:
    admin = redis.Redis.from_url(SHARED_URL)
    try:
        return [
            client for client in admin.client_list() if client.get("name") == f"crmfs-feed:{prefix}"
        ]
    finally:
        admin.close()


@pytest.mark.parametrize("killed", ["notices", "tracking", "both"])
def test_a_killed_redis_connection_says_none_and_the_feed_comes_back(
    redis_prefix: str, notices: Notices, killed: str
) -> None:
    settings = RedisSettings(SHARED_URL, backoff_s=0.01)
    reader, writer = (
        RedisOnlineStore(settings, redis_prefix),
        RedisOnlineStore(settings, redis_prefix),
    )
    writer.write({"t": {1: b"a"}}, Watermark(1, 1))
    feed = feed_of(reader, notices)
    clients = _feed_clients(redis_prefix)
    assert sorted(str(client["sub"]) for client in clients) == ["0", "1"]
    victims = [
        client
        for client in clients
        if killed == "both" or (client["sub"] == "1") == (killed == "notices")
    ]
    admin = redis.Redis.from_url(SHARED_URL)
    for victim in victims:
        admin.client_kill_filter(_id=str(victim["id"]))
    admin.close()
    seen = notices.wait_for(
        lambda seen: [notice for notice, _ in seen] == [None, None], "None on loss and on return"
    )
    assert [connected for _, connected in seen] == [False, True]  # see ``ChangeFeed``
    assert feed.connected
    writer.write({"t": {2: b"b"}}, Watermark(2, 2))
    notices.wait_for(lambda seen: ("t", 2) in states_in(seen), "a key after the return")
    assert len(_feed_clients(redis_prefix)) == 2
    feed.close()
    assert _feed_clients(redis_prefix) == []  # closed: its connections too
    reader.close()
    writer.close()


def test_a_flush_and_a_server_restart_say_none(
    throwaway_redis: ThrowawayRedis, notices: Notices
) -> None:
    settings = RedisSettings(throwaway_redis.url, backoff_s=0.01, timeout_s=1)
    reader, writer = RedisOnlineStore(settings, "p"), RedisOnlineStore(settings, "p")
    writer.write({"t": {1: b"a"}}, Watermark(1, 1))
    feed = feed_of(reader, notices)
    admin = redis.Redis.from_url(throwaway_redis.url)
    admin.flushdb()
    admin.close()
    notices.wait_for(lambda seen: seen == [(None, True)], "None after FLUSHDB")
    throwaway_redis.kill()
    notices.wait_for(lambda seen: seen == [(None, False)], "None when the server went")
    assert not feed.connected
    throwaway_redis.start()
    notices.wait_for(lambda seen: seen == [(None, True)], "None once the server is back")
    writer.write({"t": {1: b"a"}}, Watermark(1, 1))  # an empty server: the table is new
    notices.wait_for(a_none, "None: a table was made")  # (with the write, if read together)
    notices.wait_quiet()
    writer.write({"t": {2: b"b"}}, Watermark(2, 2))
    notices.wait_for(lambda seen: ("t", 2) in states_in(seen), "a key after the restart")
    reader.close()
    writer.close()


def test_a_feed_started_while_redis_is_away_connects_when_it_comes(
    throwaway_redis: ThrowawayRedis, notices: Notices
) -> None:
    throwaway_redis.stop()
    settings = RedisSettings(throwaway_redis.url, backoff_s=0.01, timeout_s=1)
    reader = RedisOnlineStore(settings, "p")
    feed = notices.start(reader.change_feed())
    assert not feed.connected
    throwaway_redis.start()
    notices.wait_for(lambda seen: seen == [(None, True)], "None once connected")
    reader.close()


@pytest.mark.parametrize("key", [0, -5, 2**70, "", "1", "Zoë", "a:b", "\udcff"])
def test_entity_keys_are_read_back_from_redis_key_names(key: str | int) -> None:
    assert entity_key(entity_bytes(key)) == key
    with pytest.raises(ValueError, match="not an entity key"):
        entity_key(b"x1")
