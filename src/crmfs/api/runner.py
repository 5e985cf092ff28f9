"""Running the server: ``crmfs serve`` (uvicorn, one or more worker processes)."""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI

from crmfs.errors import ConfigError
from crmfs.timestamps import to_micros

REPO_ENV = "CRMFS_SERVE_REPO"
AT_ENV = "CRMFS_SERVE_AT"  # microseconds since the epoch: serve as of this fixed time
log = logging.getLogger("crmfs.api")


def app_from_env() -> FastAPI:
    """The app of one worker process: the project named by ``CRMFS_SERVE_REPO``."""
    from crmfs.api.app import create_app
    from crmfs.store import FeatureStore

    at = os.environ.get(AT_ENV)
    clock = None if at is None else _fixed(int(at))
    store = FeatureStore(Path(os.environ.get(REPO_ENV, ".")), clock=clock)
    store.plans()  # fail at start, not at the first request, if definitions are not applied
    return create_app(store)


@contextmanager
def serving_in_thread(app: FastAPI, start_timeout_s: float = 30.0) -> Iterator[int]:
    """Serve ``app`` on a free loopback port from a thread of this process (the demo,
    tests); yields the port, and stops the server on exit."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="crmfs-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the feature server did not start on port {port}")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def _fixed(at: int) -> Callable[[], int]:
    return lambda: at


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    repo: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    *,
    insecure: bool = False,
    access_log: bool = False,
    at: datetime | None = None,
) -> None:
    """Serve ``repo`` until interrupted. Without API keys, only on loopback (or ``insecure``).

    ``at`` freezes the server's clock (replays of a past log, benchmarks): values are read
    as of that time, and events ingested through the server are stamped with it."""
    import uvicorn

    from crmfs.config import ProjectConfig
    from crmfs.serving.access import KEYS_FILE

    config = ProjectConfig.load(repo)
    keys_file = config.data_dir / KEYS_FILE
    if not keys_file.exists() and not is_loopback(host) and not insecure:
        raise ConfigError(
            f"no API keys in {keys_file}: serving on {host} would let anyone read every"
            " feature; add one with `crmfs keys add NAME --role reader`, bind to 127.0.0.1,"
            " or pass --insecure"
        )
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    os.environ[REPO_ENV] = str(repo.resolve())
    if at is not None:
        os.environ[AT_ENV] = str(to_micros(at))
    metrics_dir = None
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        metrics_dir = tempfile.mkdtemp(prefix="crmfs-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "crmfs.api.runner:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            access_log=access_log,
            log_level="info",
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
