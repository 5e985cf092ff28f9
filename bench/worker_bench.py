"""Stream workers on Redis Streams: throughput with one and two workers, event-to-visible lag.

Figures (for ``bench/run.py``; ``run_worker_bench`` returns them in ``crmfs_bench``'s form):

- ``worker_events_per_s_1``, ``worker_events_per_s_2``: the scenario's first
  ``THROUGHPUT_EVENTS`` events (the ``crmfs_bench`` view: 3 latest values, 7 windowed
  aggregations) published to the bus first (not timed), then consumed by one, then two
  ``crmfs worker`` processes (fresh project each), timed from the moment the workers, started
  and registered, are let go until every message is acknowledged (log appended, online
  store in Redis written). Medians of ``RUNS`` runs, one and two workers taking turns (a
  single run on 2 cores varies by about 10 %). Targets: >= 30,000 events/s with one worker,
  >= 1.3 times that with two, on 2 cores shared with Redis.
- ``redis_freshness_p99_ms``: one worker waiting on the bus; single events published one
  at a time; from the start of the publish to an online read (Redis) that sees the event.

Usage: ``python bench/worker_bench.py [SCENARIO_DIR]`` prints the figures (the scenario is
written by ``bench/scenario.py``; ``bench/.work/scenario`` by default).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros
from crmfs_bench import SOURCE, VIEW, figure, log
from scenario import ANCHOR

BENCH_DIR = Path(__file__).resolve().parent
THROUGHPUT_EVENTS = 400_000
RUNS = 3
PARTITIONS = 8
MESSAGE_ROWS = 1_000
WORKER_BATCH = 64  # messages per fetch
FRESHNESS_SAMPLES = 300
FRESHNESS_TIMEOUT_S = 10.0
REDIS_URL = os.environ.get("CRMFS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# The worker processes' clock: a day after the scenario's anchor, after every event.
CLOCK_US = to_micros(ANCHOR + timedelta(days=1))
_DEFINITIONS = (
    "import sys\n"
    f"sys.path.insert(0, {str(BENCH_DIR)!r})\n"
    "from crmfs_bench import definitions\n"
    "for _definition in definitions():\n"
    "    globals()[_definition.name] = _definition\n"
)


def _project(folder: Path, prefix: str) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "crmfs.yaml").write_text(
        f"project: workerbench\nonline_store: {{type: redis, url: {REDIS_URL!r},"
        f" key_prefix: {prefix}}}\n"
    )
    (folder / "definitions.py").write_text(_DEFINITIONS)
    store = FeatureStore(folder, clock=lambda: CLOCK_US)
    store.apply()
    store.close()
    return folder


def _settings() -> Any:
    from crmfs.storage.redis_streams import StreamSettings

    return StreamSettings(partitions=PARTITIONS, max_backlog=0, lease_s=10.0)


def _drop_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match="{" + prefix + "}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def _start_workers(project: Path, count: int, go: Path) -> list[subprocess.Popen[str]]:
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "worker",
                str(project),
                f"w{n}",
                str(go),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]
    for worker in workers:  # each prints "ready" once registered with the bus
        assert worker.stdout is not None
        line = worker.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"bench worker did not start: {line!r}")
    return workers


def _stop(workers: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    stats = []
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        if worker.returncode != 0:
            raise RuntimeError(f"bench worker exited with {worker.returncode}")
        stats.append(json.loads(out.strip().splitlines()[-1]))
    return stats


def worker_throughput(events: pa.Table, work_dir: Path, workers: int) -> float:
    """Events per second ``workers`` worker processes consume from a pre-filled bus."""
    from crmfs.cli.worker_cmd import open_stream_bus

    prefix = f"crmfs-bench-workers-{uuid.uuid4().hex[:8]}"
    project = _project(work_dir / f"workers{workers}", prefix)
    try:
        store = FeatureStore(project, clock=lambda: CLOCK_US)
        bus, transport = open_stream_bus(store, _settings(), message_rows=MESSAGE_ROWS)
        started = time.perf_counter()
        for offset in range(0, events.num_rows, 50_000):
            bus.publish(SOURCE, events.slice(offset, 50_000))
        log(f"published {events.num_rows:,} events in {time.perf_counter() - started:.2f} s")
        go = work_dir / f"go{workers}"
        go.unlink(missing_ok=True)
        running = _start_workers(project, workers, go)
        go.touch()
        started = time.perf_counter()
        while any(transport.backlog().values()):
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        stats = _stop(running)
        accepted = store.log.counts().get(SOURCE, 0)
        transport.close()
        store.close()
        if accepted != events.num_rows:
            raise RuntimeError(f"workers logged {accepted} of {events.num_rows} events")
        log(f"{workers} worker(s): {events.num_rows:,} events in {seconds:.2f} s; {stats}")
        return events.num_rows / seconds
    finally:
        _drop_prefix(prefix)


def redis_freshness(events: pa.Table, work_dir: Path, samples: int) -> np.ndarray:
    """Seconds from the start of a single-event publish to an online read that sees it."""
    from crmfs.cli.worker_cmd import open_stream_bus

    prefix = f"crmfs-bench-fresh-{uuid.uuid4().hex[:8]}"
    project = _project(work_dir / "freshness", prefix)
    try:
        store = FeatureStore(project, clock=lambda: CLOCK_US)
        bus, transport = open_stream_bus(store, _settings(), message_rows=MESSAGE_ROWS)
        bus.publish(SOURCE, events.slice(0, 20_000))  # some history
        go = work_dir / "go-fresh"
        go.touch()
        running = _start_workers(project, 1, go)
        while any(transport.backlog().values()):
            time.sleep(0.01)
        ids = pc.unique(events.slice(0, 20_000).column("customer_id")).to_pylist()
        rng = np.random.default_rng(5)
        ref = f"{VIEW}:last_item_id"
        out = np.empty(samples)
        for i in range(samples):
            customer = str(rng.choice(ids))
            marker = f"fresh{i:05d}"
            event_time = ANCHOR + timedelta(seconds=i + 1)
            record = {
                "customer_id": customer,
                "event_id": f"fresh-e{i:05d}",
                "event_time": event_time,
                "event_type": "view",
                "item_id": marker,
                "channel": "web",
                "amount": None,
            }
            start = time.perf_counter()
            bus.publish(SOURCE, [record])
            while True:
                response = store.get_online_features(
                    [ref], [{"customer_id": customer}], now=event_time
                )
                elapsed = time.perf_counter() - start
                if response.values[ref][0] == marker:
                    break
                if elapsed > FRESHNESS_TIMEOUT_S:
                    raise RuntimeError(f"event {marker} not visible after {elapsed:.1f} s")
            out[i] = elapsed
        _stop(running)
        transport.close()
        store.close()
        return out
    finally:
        _drop_prefix(prefix)


def run_worker_bench(scenario_dir: Path, work_dir: Path) -> list[dict[str, Any]]:
    """The three figures, on ``scenario_dir/events.parquet`` (needs Redis at REDIS_URL)."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    events = pq.read_table(Path(scenario_dir) / "events.parquet")
    events = events.slice(0, min(THROUGHPUT_EVENTS, events.num_rows))
    events = events.take(pc.sort_indices(events, [("event_time", "ascending")]))
    runs: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(RUNS):
        for workers in (1, 2):
            runs[workers].append(worker_throughput(events, work_dir, workers))
    one, two = float(np.median(runs[1])), float(np.median(runs[2]))
    log(f"one worker {runs[1]}, two {runs[2]} events/s: medians, two {two / one:.2f} times one")
    fresh = redis_freshness(events, work_dir, FRESHNESS_SAMPLES)
    log(f"redis freshness: p50 {np.percentile(fresh, 50) * 1e3:.2f} ms")
    return [
        figure("worker_events_per_s_1", one, "events/s"),
        figure("worker_events_per_s_2", two, "events/s"),
        figure("redis_freshness_p99_ms", np.percentile(fresh, 99) * 1e3, "ms"),
    ]


def _worker(project: Path, name: str, go: Path) -> int:
    """A bench worker process: registers, says ready, waits for ``go``, runs until SIGTERM,
    prints its figures as JSON."""
    from crmfs.cli.worker_cmd import open_stream_worker
    from crmfs.ingestion.stream_worker import WorkerOptions

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    store = FeatureStore(project, clock=lambda: CLOCK_US)
    options = WorkerOptions(max_messages=WORKER_BATCH, block_ms=200, report_every_s=3600)
    with open_stream_worker(store, name, _settings(), options) as worker:
        store.pipeline  # noqa: B018  (built before the clock starts)
        worker.consumer.start()
        print("ready", flush=True)
        while not go.exists():
            time.sleep(0.002)
        stats = worker.run(stop)
    store.close()
    print(json.dumps({"name": name, "records": stats.records, "messages": stats.messages}))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "worker":
        return _worker(Path(argv[1]), argv[2], Path(argv[3]))
    scenario = Path(argv[0]) if argv else BENCH_DIR / ".work" / "scenario"
    for item in run_worker_bench(scenario, BENCH_DIR / ".work" / "worker-bench"):
        print(f"{item['name']}: {item['value']:,} {item['unit']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
