"""When Redis is away: a retryable ``BackendUnavailable`` after bounded retries, no partial
write, and the store working again once the server is back. The servers stopped and killed
here are the test's own (``throwaway_redis``, ``durable_redis``), never the shared one."""

from __future__ import annotations

import os
import threading
import time

import pytest

from crmfs.errors import BackendUnavailable, StorageError
from crmfs.storage.ports import Watermark
from crmfs.storage.redis_connection import RedisSettings
from crmfs.storage.redis_online import RedisOnlineStore
from tests.storage.redis_servers import ThrowawayRedis


def _store(url: str, retries: int = 2, backoff_s: float = 0.02) -> RedisOnlineStore:
    settings = RedisSettings(url, retries=retries, backoff_s=backoff_s, timeout_s=2)
    return RedisOnlineStore(settings, "failures", write_lease_s=2)


def test_a_closed_port_gives_a_retryable_error_after_bounded_retries() -> None:
    store = _store("redis://127.0.0.1:1/0", retries=3, backoff_s=0.02)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as unavailable:
        store.write({"t": {"a": b"1"}}, Watermark(1, 1))
    elapsed = time.monotonic() - started
    assert 0.02 + 0.04 + 0.08 <= elapsed < 2  # three waits, doubling, then it gives up
    message = str(unavailable.value)
    assert "Redis at redis://127.0.0.1:1/0 is unavailable" in message
    assert "gave up after 4 attempts" in message
    assert "Retry later" in message
    assert isinstance(unavailable.value, StorageError)
    for call in (lambda: store.read("t", ["a"]), store.watermark, store.begin_write):
        with pytest.raises(BackendUnavailable):
            call()
    store.close()


def test_the_store_works_again_once_the_server_is_back(throwaway_redis: ThrowawayRedis) -> None:
    store = _store(throwaway_redis.url)
    store.write({"t": {"a": b"1"}}, Watermark(1, 1))
    throwaway_redis.stop()
    with pytest.raises(BackendUnavailable):
        store.write({"t": {"a": b"2"}}, Watermark(2, 2))
    with pytest.raises(BackendUnavailable):
        store.read("t", ["a"])
    throwaway_redis.start()  # without persistence: an empty server, its scripts forgotten
    assert store.watermark() == Watermark()
    store.write({"t": {"a": b"3"}}, Watermark(3, 3), expected=Watermark())
    assert store.read("t", ["a"]) == [b"3"]
    store.close()


def test_a_write_retried_while_the_server_restarts_lands_once(
    durable_redis: ThrowawayRedis,
) -> None:
    store = _store(durable_redis.url, retries=8, backoff_s=0.05)
    store.write({"t": {"a": b"1"}}, Watermark(1, 1))
    durable_redis.stop()
    restart = threading.Timer(0.3, durable_redis.start)
    restart.start()
    store.write({"t": {"a": b"2", "b": b"2"}}, Watermark(2, 2), expected=Watermark(1, 1))
    restart.join()
    assert store.read("t", ["a", "b"]) == [b"2", b"2"]
    assert store.watermark() == Watermark(2, 2)
    store.close()


@pytest.mark.parametrize("kill_after_s", [0.0, 0.03, 0.08, 0.2])
def test_a_write_cut_by_a_server_crash_lands_whole_or_not_at_all(
    durable_redis: ThrowawayRedis, kill_after_s: float
) -> None:
    """The server is killed (SIGKILL) while a large write of two tables is under way; after
    a restart from its append-only file, the write is there entirely or not at all."""
    store = _store(durable_redis.url, retries=0)
    old = dict.fromkeys(range(40000), b"old")
    store.write({"t": old, "u": {"k": b"old"}}, Watermark(1, 1))
    new = {key: b"new-%d" % key for key in range(40_000)}
    failures: list[BaseException] = []

    def write() -> None:
        try:
            store.write({"t": new, "u": {"k": b"new"}}, Watermark(2, 2), expected=Watermark(1, 1))
        except StorageError as exc:
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(kill_after_s)
    durable_redis.kill()
    writer.join(30)
    durable_redis.start()
    mark = store.watermark()
    states = store.read("t", list(new))
    if mark == Watermark(2, 2):
        assert states == list(new.values())
        assert store.read("u", ["k"]) == [b"new"]
    else:
        assert mark == Watermark(1, 1)
        assert failures, "a write that did not land must have failed"
        assert states == list(old.values())
        assert store.read("u", ["k"]) == [b"old"]
    store.close()


def test_the_password_comes_from_settings_and_a_wrong_one_is_not_retried(
    throwaway_redis: ThrowawayRedis,
) -> None:
    secret = os.urandom(8).hex()
    admin = _store(throwaway_redis.url)
    admin._redis.client.config_set("requirepass", secret)
    settings = RedisSettings(throwaway_redis.url, password=secret)
    with_password = RedisOnlineStore(settings, "auth")
    with_password.write({"t": {"a": b"1"}})
    assert with_password.read("t", ["a"]) == [b"1"]
    wrong = RedisOnlineStore(RedisSettings(throwaway_redis.url, password="wrong"), "auth")
    started = time.monotonic()
    with pytest.raises(StorageError, match="refused the credentials") as refused:
        wrong.read("t", ["a"])
    assert not isinstance(refused.value, BackendUnavailable)
    assert time.monotonic() - started < 1
    assert secret not in str(refused.value)
    for store in (admin, with_password, wrong):
        store.close()
