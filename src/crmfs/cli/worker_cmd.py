"""``crmfs worker``: a stream worker of the project's Redis Streams event bus; ``crmfs bus``:
its backlog, dead letters and requeueing.

The bus lives on the Redis of ``--redis-url`` (else ``CRMFS_BUS_URL``, else the online
store's Redis, else ``redis://127.0.0.1:6379/0``), under the key prefix of the online store
(the project name unless set). See ``docs/workers.md``.

``open_stream_bus`` and ``open_stream_worker`` build the same objects from Python (tests,
benchmarks, a service that publishes).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from crmfs.errors import ConfigError

if TYPE_CHECKING:
    from crmfs.ingestion.bus import EventBus, StreamBus
    from crmfs.ingestion.stream_worker import StreamWorker, WorkerOptions
    from crmfs.storage.redis_connection import RedisSettings
    from crmfs.storage.redis_streams import RedisStreamBus, StreamSettings
    from crmfs.store import FeatureStore

DEFAULT_URL = "redis://127.0.0.1:6379/0"
bus_app = typer.Typer(
    help="The Redis Streams event bus: backlog, dead letters.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)
Repo = Annotated[Path, typer.Option("--repo", "-r", help="Project folder (holds crmfs.yaml)")]
Url = Annotated[
    str | None, typer.Option("--redis-url", help="Redis of the bus (default: see crmfs worker)")
]
PasswordEnv = Annotated[
    str | None, typer.Option(help="Environment variable holding the bus Redis's password")
]
Prefix = Annotated[str | None, typer.Option(help="Key prefix (default: the online store's)")]
Partitions = Annotated[
    int | None,
    typer.Option(help="Entity partitions of the bus, fixed once used (default: crmfs.yaml's, 8)"),
]
# The StreamSettings that crmfs.yaml's event_bus section may set.
_SETTINGS = (
    "partitions", "max_backlog", "block", "publish_timeout_s", "lease_s", "claim_idle_s",
    "max_deliveries",
)  # fmt: skip


def bus_connection(
    store: FeatureStore, url: str | None = None, password_env: str | None = None
) -> RedisSettings:
    """Where the project's bus is: ``url``, else crmfs.yaml's ``event_bus.url``, else
    ``CRMFS_BUS_URL``, else the online store's Redis (with its password), else the local
    default."""
    from crmfs.storage.redis_connection import RedisSettings

    online, bus = store.config.online_store, store.config.event_bus
    online_url = getattr(online, "url", None)
    url = url or bus.get("url") or os.environ.get("CRMFS_BUS_URL") or online_url or DEFAULT_URL
    password_env = password_env or bus.get("password_env")
    if password_env is None and url == online_url:
        password_env = getattr(online, "password_env", None)
    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if not password:
            raise ConfigError(
                f"environment variable {password_env} (the bus's password) is not set"
            )
    return RedisSettings(url=url, password=password)


def bus_prefix(store: FeatureStore, prefix: str | None = None) -> str:
    return (
        prefix
        or store.config.event_bus.get("key_prefix")
        or getattr(store.config.online_store, "key_prefix", None)
        or store.config.project
    )


def stream_settings(store: FeatureStore, **given: Any) -> StreamSettings:
    """The bus's settings: crmfs.yaml's ``event_bus`` section, then ``given`` (those not
    None: command-line options)."""
    from crmfs.storage.redis_streams import StreamSettings

    options = {k: v for k, v in store.config.event_bus.items() if k in _SETTINGS}
    options.update((k, v) for k, v in given.items() if v is not None)
    return StreamSettings(**options)


def open_event_bus(store: FeatureStore) -> tuple[EventBus, Callable[[], None]]:
    """The bus crmfs.yaml's ``event_bus`` names, to publish to, and how to close it:
    ``embedded`` (the default) ingests directly, ``redis_streams`` publishes for workers."""
    if store.config.event_bus.get("type", "embedded") == "embedded":
        from crmfs.ingestion.bus import EmbeddedBus

        return EmbeddedBus(store.ingest), lambda: None
    bus, transport = open_stream_bus(store)
    return bus, transport.close


def open_stream_bus(
    store: FeatureStore,
    settings: StreamSettings | None = None,
    url: str | None = None,
    prefix: str | None = None,
    message_rows: int | None = None,
) -> tuple[StreamBus, RedisStreamBus]:
    """A publisher of the project's records (``StreamBus``) and the bus under it (close it)."""
    from crmfs.ingestion.bus import DEFAULT_MESSAGE_ROWS, StreamBus
    from crmfs.storage.redis_streams import RedisStreamBus

    transport = RedisStreamBus(
        bus_connection(store, url), bus_prefix(store, prefix), settings or stream_settings(store)
    )
    return StreamBus(store.catalog, transport, message_rows or DEFAULT_MESSAGE_ROWS), transport


@contextmanager
def open_stream_worker(
    store: FeatureStore,
    name: str | None = None,
    settings: StreamSettings | None = None,
    options: WorkerOptions | None = None,
    url: str | None = None,
    prefix: str | None = None,
    report: Callable[[str], None] | None = None,
    parallel_fold: bool = False,
) -> Iterator[StreamWorker]:
    """A stream worker of ``store``'s project (``worker.run(stop)`` until ``stop`` is set).

    ``parallel_fold``: let large batches be folded on two cores (a fold worker process, as
    ``crmfs.yaml``'s ``online_store.parallel_fold`` says); off by default: workers scale by
    processes, and one worker alone measured faster without it too."""
    from crmfs.ingestion.commit_lock import LOCK_FILE, CommitLock
    from crmfs.ingestion.stream_worker import StreamWorker
    from crmfs.storage.redis_stream_consumer import RedisStreamConsumer
    from crmfs.storage.redis_streams import RedisStreamBus

    transport = RedisStreamBus(
        bus_connection(store, url), bus_prefix(store, prefix), settings or stream_settings(store)
    )
    lock = CommitLock(store.log.root / LOCK_FILE)
    if not parallel_fold:
        store.pipeline.processor.fold_in_this_process()
    try:
        consumer = RedisStreamConsumer(transport, name or f"{socket.gethostname()}-{os.getpid()}")
        yield StreamWorker(
            store.pipeline,
            store.mapped_keys,
            store.identity_graph,
            consumer,
            lock,
            options,
            report,
            transport.backlog,
        )
    finally:
        lock.close()
        transport.close()


def _store(repo: Path) -> FeatureStore:
    from crmfs.store import FeatureStore

    return FeatureStore(repo)


def worker(
    repo: Repo = Path("."),
    redis_url: Url = None,
    password_env: PasswordEnv = None,
    key_prefix: Prefix = None,
    partitions: Partitions = None,
    consumer: Annotated[
        str | None,
        typer.Option(help="Consumer name, unique among live workers (default: host-pid)"),
    ] = None,
    batch: Annotated[int, typer.Option(help="Messages fetched at most per round")] = 64,
    block_ms: Annotated[int, typer.Option(help="How long a read waits for new messages")] = 500,
    lease: Annotated[
        float | None, typer.Option(help="Seconds a dead worker keeps its partitions (10)")
    ] = None,
    claim_idle: Annotated[
        float | None, typer.Option(help="Seconds a message must be idle to be taken over")
    ] = None,
    max_deliveries: Annotated[
        int | None, typer.Option(help="Deliveries before a dead letter (5)")
    ] = None,
    gap_timeout: Annotated[
        float, typer.Option(help="Seconds a stuck online watermark waits before a catch-up")
    ] = 5.0,
    report_every: Annotated[float, typer.Option(help="Seconds between progress lines")] = 10.0,
    parallel_fold: Annotated[
        bool, typer.Option(help="Fold large batches on two cores (a fold worker process)")
    ] = False,
) -> None:
    """Run a stream worker: consume this project's event bus (Redis Streams), validate,
    resolve identity, log and apply online; stop cleanly on SIGTERM or Ctrl-C."""
    from crmfs.ingestion.stream_worker import WorkerOptions

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    options = WorkerOptions(
        max_messages=batch,
        block_ms=block_ms,
        report_every_s=report_every,
        gap_timeout_s=gap_timeout,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    store = _store(repo)
    try:
        settings = stream_settings(
            store,
            partitions=partitions,
            lease_s=lease,
            claim_idle_s=claim_idle,
            max_deliveries=max_deliveries,
        )
        with open_stream_worker(
            store, consumer, settings, options, redis_url, key_prefix, _line, parallel_fold
        ) as running:
            running.run(stop)
    finally:
        store.close()


def _line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextmanager
def _bus(repo: Path, url: str | None, prefix: str | None, partitions: int | None) -> Iterator[Any]:
    from crmfs.storage.redis_streams import RedisStreamBus

    store = _store(repo)
    try:
        transport = RedisStreamBus(
            bus_connection(store, url),
            bus_prefix(store, prefix),
            stream_settings(store, partitions=partitions),
        )
        try:
            yield transport
        finally:
            transport.close()
    finally:
        store.close()


@bus_app.command()
def status(
    repo: Repo = Path("."),
    redis_url: Url = None,
    key_prefix: Prefix = None,
    partitions: Partitions = None,
) -> None:
    """Each partition's backlog and the messages each worker holds unacknowledged."""
    with _bus(repo, redis_url, key_prefix, partitions) as transport:
        backlog, pending = transport.backlog(), transport.pending()
        dead = len(transport.dead_letters(count=100_000))
    table = Table("partition", "backlog (messages)", "unacknowledged, by worker")
    for name, length in backlog.items():
        held = ", ".join(f"{w}: {n}" for w, n in sorted(pending[name].items()) if n) or "-"
        table.add_row(name, f"{length:,}", held)
    console.print(table)
    console.print(f"dead letters: {dead:,}")


@bus_app.command("dead-letters")
def dead_letters(
    repo: Repo = Path("."),
    redis_url: Url = None,
    key_prefix: Prefix = None,
    partitions: Partitions = None,
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 20,
) -> None:
    """Messages the workers could not process, with the reason."""
    with _bus(repo, redis_url, key_prefix, partitions) as transport:
        letters = transport.dead_letters(limit)
    table = Table("dead id", "partition", "message", "source", "rows", "deliveries", "reason")
    for letter in letters:
        table.add_row(
            letter["dead_id"],
            letter.get("partition", ""),
            letter.get("id", ""),
            letter.get("source", ""),
            letter.get("rows", ""),
            letter.get("deliveries", ""),
            letter.get("reason", ""),
        )
    console.print(table)


@bus_app.command()
def requeue(
    repo: Repo = Path("."),
    redis_url: Url = None,
    key_prefix: Prefix = None,
    partitions: Partitions = None,
    ids: Annotated[list[str] | None, typer.Argument(help="Dead ids (default: all)")] = None,
) -> None:
    """Publish dead letters again (after a fix), removing them from the dead letters."""
    with _bus(repo, redis_url, key_prefix, partitions) as transport:
        moved = transport.requeue_dead_letters(ids or None)
    console.print(f"requeued {moved:,} messages")
