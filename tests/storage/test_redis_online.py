"""What only the Redis online store has: its key layout, key TTLs, key spaces deleted after a
replacement, the write lease, and the clean-up of a replacement that was never finished."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from redis.crc import key_slot

from crmfs.errors import StorageError
from crmfs.storage.ports import Watermark, WatermarkMoved
from crmfs.storage.redis_connection import RedisSettings
from crmfs.storage.redis_online import RedisOnlineStore
from crmfs.storage.redis_spaces import ABANDONED_AFTER_S
from tests.storage.redis_servers import SHARED_URL, keys_under


def _store(prefix: str, **options: object) -> RedisOnlineStore:
    return RedisOnlineStore(RedisSettings(SHARED_URL), prefix, **options)  # type: ignore[arg-type]


def test_keys_are_short_and_share_one_hash_tag(redis_prefix: str) -> None:
    store = _store(redis_prefix)
    store.write({"customer_activity__v1": {"c1": b"a", 42: b"b"}}, Watermark(1, 1))
    tag = b"{" + redis_prefix.encode() + b"}"
    assert keys_under(redis_prefix) == sorted(
        [tag + b":1:i42", tag + b":1:sc1", tag + b":m", tag + b":n", tag + b":t"]
    )
    client = redis.Redis.from_url(SHARED_URL)
    assert client.hgetall(tag + b":t") == {b"customer_activity__v1": b"1"}
    client.close()
    assert len({key_slot(key) for key in keys_under(redis_prefix)}) == 1  # one Cluster slot
    store.close()


def test_entity_keys_get_the_ttl_of_their_table_renewed_by_each_write(redis_prefix: str) -> None:
    ttls = {"expiring": 3600}
    store = _store(redis_prefix, key_ttl=ttls.get)
    store.write({"expiring": {"a": b"1"}, "kept": {"a": b"2"}})
    client = redis.Redis.from_url(SHARED_URL)
    tag = b"{" + redis_prefix.encode() + b"}"
    expiring, kept = (tag + b":1:sa", tag + b":2:sa")
    assert 3_590_000 < client.pttl(expiring) <= 3_600_000
    assert client.pttl(kept) == -1  # no TTL
    client.pexpire(expiring, 10_000)
    store.write({"expiring": {"a": b"3"}})
    assert client.pttl(expiring) > 3_590_000  # renewed
    store.replace_table("expiring", {"b": b"4"}, Watermark())
    assert 3_590_000 < client.pttl(tag + b":3:sb") <= 3_600_000
    client.close()
    store.close()


def test_a_replaced_or_dropped_table_leaves_no_key_behind(redis_prefix: str) -> None:
    store = _store(redis_prefix)
    store.write({"t": dict.fromkeys(range(12000), b"old")}, Watermark(1, 1))
    store.replace_table("t", dict.fromkeys(range(5), b"new"), Watermark(1, 1))
    tag = b"{" + redis_prefix.encode() + b"}"
    entity_keys = [key for key in keys_under(redis_prefix) if key.count(b":") == 2]
    assert len(entity_keys) == 5
    assert all(key.startswith(tag + b":2:") for key in entity_keys)
    store.drop_table("t")
    assert keys_under(redis_prefix) == sorted([tag + b":m", tag + b":n"])
    store.close()


def test_a_replacement_left_unfinished_is_deleted_once_abandoned(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process killed while filling a table's new key space leaves it to a later clean-up;
    a replacement still running is not touched."""
    store = _store(redis_prefix)
    store.write({"t": {"a": b"live"}})
    spaces = store._spaces
    dead, dead_started = spaces.reserve()
    spaces.fill(dead, [(key, b"half-written") for key in range(100)], 0)
    running, _ = spaces.reserve()
    spaces.fill(running, [("x", b"filling")], 0)
    client = redis.Redis.from_url(SHARED_URL)
    long_ago = dead_started - ABANDONED_AFTER_S - 1
    client.hset(store.keys.filling, dead, long_ago)  # as if it had started over an hour ago
    assert store.collect_garbage() == 100
    assert client.hkeys(store.keys.filling) == [running]
    assert store.read("t", ["a"]) == [b"live"]
    # A replacement whose space was taken for abandoned cannot switch to it.
    store.write({"t": {"b": b"more"}})
    client.hset(store.keys.filling, running, long_ago)
    store.collect_garbage()
    monkeypatch.setattr(spaces, "reserve", lambda: (running, long_ago))  # filled long ago
    monkeypatch.setattr(spaces, "fill", lambda *args: None)
    with pytest.raises(StorageError, match="took over an hour"):
        store.replace_table("t", {"c": b"new"}, Watermark())
    assert store.read("t", ["a", "b", "c"]) == [b"live", b"more", None]
    client.close()
    store.close()


def test_a_lease_whose_holder_died_expires_and_its_commit_is_refused(redis_prefix: str) -> None:
    dead = _store(redis_prefix, write_lease_s=0.4)
    alive = _store(redis_prefix, write_lease_s=0.4)
    staged = dead.begin_write(expected=Watermark())
    staged.add({"t": {"a": b"never"}})
    started = time.monotonic()
    alive.write({"t": {"b": b"waited"}}, Watermark(1, 1))  # waits for the lease to expire
    assert time.monotonic() - started >= 0.3
    with pytest.raises(WatermarkMoved):
        staged.commit(Watermark(1, 1))
    assert alive.read("t", ["a", "b"]) == [None, b"waited"]
    alive.write({"t": {"c": b"free"}})  # the failed commit holds nothing
    dead.close()
    alive.close()


def test_a_writer_waits_at_most_twice_the_lease(redis_prefix: str) -> None:
    holder = _store(redis_prefix, write_lease_s=5)
    waiter = _store(redis_prefix, write_lease_s=0.2)
    staged = holder.begin_write()
    with pytest.raises(StorageError, match=r"waited .* for another writer's staged write"):
        waiter.write({"t": {"a": b"1"}})
    staged.abort()
    waiter.write({"t": {"a": b"1"}})
    holder.close()
    waiter.close()


def test_a_thread_with_an_open_staged_write_cannot_write_beside_it(redis_prefix: str) -> None:
    store = _store(redis_prefix)
    staged = store.begin_write()
    with pytest.raises(StorageError, match="commit or abort the staged write first"):
        store.write({"t": {"a": b"1"}})
    seen: list[bytes | None] = []
    reader = threading.Thread(target=lambda: seen.extend(store.read("t", ["a"])))
    staged.add({"t": {"a": b"staged"}})
    reader.start()
    reader.join(5)
    assert seen == [None]  # other threads read what is committed, without waiting
    staged.commit()
    assert store.read("t", ["a"]) == [b"staged"]
    store.close()
