"""crmfs on Redis: online reads, materialize and memory per entity, on the shared scenario.

A project folder with ``crmfs.yaml`` choosing ``online_store: {type: redis}`` (database
``REDIS_DB`` of the local server, flushed first: keep it for the bench) and the bench's
definitions (``crmfs_bench.definitions``) ingests the scenario's 1M events, then measures:

- ``redis_materialize_1m_s``: ``store.materialize()``, every view's state rebuilt from the log
  and swapped into Redis (the issue's "materialize 1M rows into Redis");
- ``redis_online_single_p99_ms`` and ``redis_online_batch100_rows_per_s``: the bench's ten
  features (windows included) for 1 and 100 random customers per call, in process;
- ``online_bytes_per_entity``: Redis's ``MEMORY USAGE`` of the view's keys, the mean over a
  sample of entities (key, value and Redis's own overhead for them);
- ``redis_ingest_events_per_s``: ingesting the 1M events in 10k batches straight into Redis
  (one process, no stream workers: those are ``worker_events_per_s_*``).

Standalone: ``python bench/redis_bench.py SCENARIO_DIR WORK_DIR`` prints the figures as JSON.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis

from crmfs.store import FeatureStore
from crmfs_bench import (
    BATCH_SIZE,
    ONLINE_BATCH_CALLS,
    ONLINE_BATCH_WARMUP,
    ONLINE_SINGLE_CALLS,
    ONLINE_SINGLE_WARMUP,
    SEED,
    Clock,
    figure,
    ingest_events,
    online_latencies,
    timed,
)

REDIS_DB = 15
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
KEY_PREFIX = "crmfs_bench"
MEMORY_SAMPLE = 2_000
BENCH_DIR = Path(__file__).resolve().parent

PROJECT_FILE = f"""\
project: crmfs_bench
definitions: definitions.py
online_store: {{type: redis, url: "{REDIS_URL}", key_prefix: {KEY_PREFIX}}}
"""
DEFINITIONS = f"""\
import sys

sys.path.insert(0, {str(BENCH_DIR)!r})
from crmfs_bench import definitions

(customer_activity,) = definitions()
"""


def log(message: str) -> None:
    print(f"[redis_bench] {message}", file=sys.stderr, flush=True)


def open_project(folder: Path, clock: Clock) -> FeatureStore:
    """A fresh project on Redis (the bench's database flushed)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "crmfs.yaml").write_text(PROJECT_FILE)
    (folder / "definitions.py").write_text(DEFINITIONS)
    redis.Redis.from_url(REDIS_URL).flushdb()
    return FeatureStore(folder, clock=clock)


def bytes_per_entity(rng: np.random.Generator) -> float:
    """Mean ``MEMORY USAGE`` of a sample of the view's entity keys."""
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{{{KEY_PREFIX}}}:*:s*", count=10_000))
    if not keys:
        raise RuntimeError(f"no entity keys under {{{KEY_PREFIX}}} in {REDIS_URL}")
    sample = rng.choice(len(keys), size=min(MEMORY_SAMPLE, len(keys)), replace=False)
    pipe = client.pipeline(transaction=False)
    for i in sample.tolist():
        pipe.memory_usage(keys[i], samples=0)
    sizes = [s for s in pipe.execute() if s is not None]
    log(f"{len(keys):,} entity keys; MEMORY USAGE of {len(sizes):,}: mean {np.mean(sizes):.0f} B")
    return float(np.mean(sizes))


def run_redis_bench(scenario_dir: Path, work_dir: Path) -> list[dict[str, Any]]:
    wall = time.perf_counter()
    events = pq.read_table(scenario_dir / "events.parquet")
    first = int(pc.min(pc.cast(events.column("event_time"), pa.int64())).as_py())
    clock = Clock(first)
    store = open_project(Path(work_dir) / "redis_project", clock)
    store.apply()
    figures = [figure("redis_ingest_events_per_s", ingest_events(store, clock, events), "events/s")]
    ids = pc.unique(events.column("customer_id")).to_numpy(zero_copy_only=False)
    del events

    seconds, reports = timed(store.materialize)
    log(f"materialize into Redis: {seconds:.2f} s, {sum(r.entities for r in reports)} entities")
    figures.append(figure("redis_materialize_1m_s", seconds, "s"))

    rng = np.random.default_rng(SEED)
    single = online_latencies(store, ids, rng, 1, ONLINE_SINGLE_WARMUP, ONLINE_SINGLE_CALLS)
    log(f"online single: p50 {np.percentile(single, 50) * 1e3:.3f} ms")
    figures.append(figure("redis_online_single_p99_ms", np.percentile(single, 99) * 1e3, "ms"))
    batch = online_latencies(store, ids, rng, BATCH_SIZE, ONLINE_BATCH_WARMUP, ONLINE_BATCH_CALLS)
    log(f"online batch of {BATCH_SIZE}: p99 {np.percentile(batch, 99) * 1e3:.2f} ms")
    figures.append(
        figure("redis_online_batch100_rows_per_s", BATCH_SIZE * len(batch) / batch.sum(), "rows/s")
    )
    figures.append(figure("online_bytes_per_entity", bytes_per_entity(rng), "bytes"))
    store.close()
    log(f"Redis run took {time.perf_counter() - wall:.1f} s")
    return figures


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python bench/redis_bench.py SCENARIO_DIR WORK_DIR", file=sys.stderr)
        return 2
    print(json.dumps(run_redis_bench(Path(args[0]), Path(args[1])), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
