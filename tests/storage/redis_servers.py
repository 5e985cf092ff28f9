"""Redis for the storage tests: the shared server at 127.0.0.1:6379, where each test works
under its own key prefix and deletes its keys after, and throwaway servers that a test
starts on a free port and may stop, kill and restart (never the shared one)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis

from crmfs.storage.redis_keys import RedisKeys

SHARED_URL = "redis://127.0.0.1:6379/0"
_START_TIMEOUT_S = 10.0


def require_shared_redis() -> None:
    """Fail (not skip) the test if the shared Redis does not answer."""
    client = redis.Redis.from_url(SHARED_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is not reachable at {SHARED_URL} ({exc}): the Redis tests need it;"
            " start it with `make services` (scripts/ensure-services.sh)",
            pytrace=False,
        )
    finally:
        client.close()


def unique_prefix(label: str) -> str:
    """A prefix no other test uses: ``label`` shortened to letters, digits, - and _."""
    return f"crmfs-test-{re.sub(r'[^A-Za-z0-9_-]', '-', label)[:40]}-{uuid.uuid4().hex[:10]}"


def keys_under(prefix: str, url: str = SHARED_URL) -> list[bytes]:
    """Every key of the online store with this prefix."""
    client = redis.Redis.from_url(url)
    try:
        return sorted(client.scan_iter(match=RedisKeys(prefix).every_key_pattern(), count=1000))
    finally:
        client.close()


def delete_prefix(prefix: str, url: str = SHARED_URL) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=RedisKeys(prefix).every_key_pattern(), count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ThrowawayRedis:
    """A redis-server of this test's own, on a free port, with its files in ``folder``;
    ``durable`` writes every change to an append-only file before answering."""

    def __init__(self, folder: Path, durable: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed: the Redis failure tests start their own"
                " server (apt-get install redis-server)",
                pytrace=False,
            )
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.durable = durable
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.durable
            else ["--appendonly", "no"]
        )
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.folder),
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + _START_TIMEOUT_S
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.BusyLoadingError:
                    pass
                except redis.ConnectionError as exc:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        message = f"redis-server on port {self.port} did not start"
                        raise RuntimeError(message) from exc
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """Stop the server at once (SIGKILL), as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait()
            self._process = None
