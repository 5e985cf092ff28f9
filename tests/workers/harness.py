"""Worker processes for the tests: start, kill, stop; publish; wait until the bus is drained."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crmfs.cli.worker_cmd import open_stream_bus
from crmfs.storage.redis_streams import RedisStreamBus, StreamSettings
from crmfs.store import FeatureStore
from tests.workers.crm_project import NOW_US, Batch

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 4


def bus_settings(**overrides: Any) -> StreamSettings:
    values: dict[str, Any] = {"partitions": PARTITIONS, "lease_s": 1.0, "max_deliveries": 4}
    values.update(overrides)
    return StreamSettings(**values)


def publish(project: Path, batches: Sequence[Batch], message_rows: int = 40) -> int:
    """Publish ``batches`` through the bus (messages of ``message_rows`` events); how many
    messages."""
    store = FeatureStore(project, clock=lambda: NOW_US)
    bus, transport = open_stream_bus(store, bus_settings(), message_rows=message_rows)
    try:
        return sum(bus.publish(source, records).messages for source, records in batches)
    finally:
        transport.close()
        store.close()


class Workers:
    """Worker processes of one project (``tests.workers.worker_main``), logs in ``folder``."""

    def __init__(self, project: Path, folder: Path) -> None:
        self.project = project
        self.folder = folder
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.options: dict[str, tuple[str, ...]] = {}
        self.started = 0

    def start(self, name: str, *options: str) -> subprocess.Popen[bytes]:
        self.options[name] = options
        self.started += 1
        path = self.folder / f"{name}-{self.started}.log"
        self.logs[name] = path
        log = path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.workers.worker_main", str(self.project), name, *options],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        log.close()
        self.running[name] = process
        return process

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        """Start ``name`` again with its options, but its crash point."""
        options = list(self.options.get(name, ()))
        if "--crash" in options:
            at = options.index("--crash")
            del options[at : at + 2]
        return self.start(name, *options)

    def kill(self, name: str) -> None:
        process = self.running.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def reap(self) -> list[str]:
        """Names of the workers that exited by themselves (a crash point), forgotten."""
        gone = [name for name, process in self.running.items() if process.poll() is not None]
        for name in gone:
            del self.running[name]
        return gone

    def wait_ready(self, name: str, timeout_s: float = 30.0) -> None:
        """Wait until worker ``name`` runs its loop (its SIGTERM handler is in place)."""
        deadline = time.monotonic() + timeout_s
        while b"ready" not in self.logs[name].read_bytes():
            if self.running[name].poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker {name} did not start\n{self.output()}")
            time.sleep(0.02)

    def stop_all(self) -> dict[str, int]:
        """SIGTERM every running worker (once it is ready); their exit codes."""
        for name, process in self.running.items():
            if process.poll() is None:
                self.wait_ready(name)
                process.send_signal(signal.SIGTERM)
        codes = {name: process.wait(30) for name, process in self.running.items()}
        self.running.clear()
        return codes

    def kill_all(self) -> None:
        for name in list(self.running):
            self.kill(name)

    def output(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.folder.glob("*.log"))
        )


def drained(transport: RedisStreamBus) -> bool:
    """Every message acknowledged (streams are trimmed as messages are)."""
    return not any(transport.backlog().values())


def caught_up(project: Path, prefix: str) -> bool:
    """Whether the online store has applied the whole event log and followed every identity
    change (read straight from the files and Redis, nothing opened for writing)."""
    from crmfs.storage.redis_connection import RedisSettings
    from crmfs.storage.redis_online import RedisOnlineStore

    data = project / "data"
    log = sqlite3.connect(data / "log" / "log.db")
    graph = sqlite3.connect(data / "identity.db")
    online = RedisOnlineStore(RedisSettings(), prefix)
    try:
        seq = log.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
        change = graph.execute("SELECT max(seq) FROM changes").fetchone()[0]
        marks = online.watermark().seq, online.identity_mark()
        return marks == ((seq or [0])[0], change or 0)
    finally:
        online.close()
        graph.close()
        log.close()


def wait_drained(
    transport: RedisStreamBus, workers: Workers, timeout_s: float = 60.0, restart: bool = True
) -> None:
    """Wait until the bus is drained and the online store has caught up with the log;
    workers that killed themselves are started again (with their options but the crash
    point) if ``restart``."""
    deadline = time.monotonic() + timeout_s
    project, prefix = workers.project, transport.keys.prefix
    while not drained(transport) or not caught_up(project, prefix):
        if restart:
            for name in workers.reap():
                workers.restart(name)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"bus not drained after {timeout_s} s: backlog {transport.backlog()},"
                f" pending {transport.pending()}\n{workers.output()}"
            )
        time.sleep(0.05)


def open_transport(prefix: str) -> RedisStreamBus:
    """The bus of the project under ``prefix`` on the shared Redis (to watch it)."""
    from crmfs.storage.redis_connection import RedisSettings

    return RedisStreamBus(RedisSettings(), prefix, bus_settings())
