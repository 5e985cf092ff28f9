"""A stream worker process for the tests, with the project's fixed clock.

``python -m tests.workers.worker_main PROJECT NAME [options]`` runs the worker that
``crmfs worker`` runs (``open_stream_worker``) until SIGTERM. ``--crash POINT:N`` makes the
process SIGKILL itself right after the N-th time it passes POINT (a real kill at a chosen
place); records with event id ``poison-crash`` kill it whenever it validates them, records
with event id ``poison-raise`` make validation raise (unless ``--cured``: a fixed worker).
``--fold-delay-ms`` waits after each fold outside the commit lock, before the write: the
other worker then folds meanwhile, on states this write is about to change.

Points: ``fetched`` (messages read, nothing done), ``identity`` (the identity graph
committed a batch's records, the log not yet), ``append`` (the log committed, the online store
not yet), ``online`` (applied online, identity changes not followed yet), ``follow``
(identity and relation changes followed), ``committed`` (before the acknowledgement).
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crmfs.cli.worker_cmd import open_stream_worker
from crmfs.identity.graph import IdentityGraph
from crmfs.ingestion.keying import MappedKeys
from crmfs.ingestion.ordered_apply import OrderedApply
from crmfs.ingestion.pipeline import IngestionPipeline
from crmfs.ingestion.stream_worker import WorkerOptions
from crmfs.runtimes.streaming.processor import StreamProcessor
from crmfs.storage.event_log import EventLog
from crmfs.storage.redis_stream_consumer import RedisStreamConsumer
from crmfs.storage.redis_streams import StreamSettings
from crmfs.store import FeatureStore
from tests.workers.crm_project import NOW_US


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _after(owner: Any, method: str, count: Callable[[Any, tuple[Any, ...]], bool]) -> None:
    """Kill the process after ``owner.method`` returned, once ``count`` says so."""
    original = getattr(owner, method)

    @functools.wraps(original)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if count(result, args):
            _die()
        return result

    setattr(owner, method, wrapped)


def install_crash(point: str, nth: int) -> None:
    seen = [0]

    def counting(result: Any, args: tuple[Any, ...]) -> bool:
        seen[0] += 1
        return seen[0] >= nth

    if point == "fetched":
        _after(RedisStreamConsumer, "fetch", lambda r, a: bool(r) and counting(r, a))
    elif point == "identity":
        _after(IdentityGraph, "add_all", lambda r, a: bool(list(a[1])) and counting(r, a))
    elif point == "append":
        _after(EventLog, "append", counting)
    elif point == "online":
        _after(StreamProcessor, "apply_committed", counting)
    elif point == "follow":
        _after(MappedKeys, "follow", lambda r, a: bool(r) and counting(r, a))
    elif point == "committed":
        original = RedisStreamConsumer.ack

        def ack(self: RedisStreamConsumer, deliveries: Any) -> None:
            if counting(None, ()):
                _die()
            original(self, deliveries)

        RedisStreamConsumer.ack = ack  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown crash point {point!r}")


def install_poison() -> None:
    original = IngestionPipeline.check

    def check(self: IngestionPipeline, source: str, raw: Any, *args: Any, **kwargs: Any) -> Any:
        if "event_id" in raw.column_names:
            ids = set(raw.column("event_id").to_pylist())
            if "poison-crash" in ids:
                _die()
            if "poison-raise" in ids:
                raise ValueError("poisoned record")
        return original(self, source, raw, *args, **kwargs)

    IngestionPipeline.check = check  # type: ignore[method-assign]


def install_fold_delay(seconds: float) -> None:
    original = OrderedApply.fold

    def fold(self: OrderedApply, source: str, batch: Any) -> Any:
        folded = original(self, source, batch)
        time.sleep(seconds)
        return folded

    OrderedApply.fold = fold  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", type=Path)
    parser.add_argument("name")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--claim-idle", type=float, default=None)
    parser.add_argument("--max-deliveries", type=int, default=4)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--gap-timeout", type=float, default=0.5)
    parser.add_argument("--crash", default=None)
    parser.add_argument("--cured", action="store_true")
    parser.add_argument("--fold-delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.crash:
        point, nth = args.crash.split(":")
        install_crash(point, int(nth))
    if not args.cured:
        install_poison()
    if args.fold_delay_ms:
        install_fold_delay(args.fold_delay_ms / 1000)
    settings = StreamSettings(
        partitions=args.partitions,
        lease_s=args.lease,
        claim_idle_s=args.claim_idle,
        max_deliveries=args.max_deliveries,
    )
    options = WorkerOptions(
        max_messages=args.batch,
        block_ms=100,
        rebalance_every_s=0.2,
        report_every_s=3600,
        gap_timeout_s=args.gap_timeout,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    store = FeatureStore(args.project, clock=lambda: NOW_US)
    try:
        with open_stream_worker(store, args.name, settings, options) as worker:
            print("ready", flush=True)
            stats = worker.run(stop)
            ordered = worker.committer.ordered
            print(f"stopped {stats}; refolds {ordered.refolds}, catch-ups {ordered.catch_ups}")
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
