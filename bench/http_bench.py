"""HTTP serving: crmfs's feature server and Feast's, on the same data, with the same client.

Each side gets the scenario's 1M events in its Redis online store (crmfs: the Redis bench's
project, ``redis_bench.open_project``, database 15; Feast: ``feast_http_bench.py`` in the Feast
venv, database 14), then its server is started as a subprocess with ``WORKERS`` worker processes
on a free loopback port (``crmfs serve``, ``feast serve``), measured by ``http_load.py`` and
stopped, even when the measurement fails:

- ``http_single_p50_ms``, ``http_single_p99_ms``: one random customer per request, one
  keep-alive client, requests one after the other (``SINGLE_CALLS`` after ``SINGLE_WARMUP``);
- ``http_batch100_p99_ms``: 100 random customers per request, likewise;
- ``http_rps_2cores``: requests per second, the best of 1, 2, 4 and 8 keep-alive clients, each
  count measured over ``RPS_MEASURE_S`` seconds after ``RPS_WARMUP_S``. The client runs on the
  same 2 cores as the server and Redis; its CPU share is logged with the server's and Redis's.

Feast's figures carry the ``feast_`` prefix. crmfs is asked the bench's ten features
(``crmfs_bench.FEATURES``: 3 latest values, 7 window aggregates); Feast its three latest values
(``feast_bench.FEATURES``), all its view can hold. A run with a failed request (a status other
than 200, an answer broken off) yields no figure for that side. Before timing, one request of
100 customers is decoded and checked, and how many values it carries is logged.

crmfs serves as of the scenario's anchor (``crmfs serve --at``), as the in-process online
figures read: its answers are full (at the wall clock, the scenario's events would be past the
view's 90-day TTL and the answers mostly empty). Feast, which does not apply the TTL online,
answers its values whatever the clock. The logged count of values shows both.
crmfs's server keeps entity states in an in-process cache for a second (its default); the bench
logs the share of reads it answered in each phase (a few % one customer at a time, about a
quarter in batches of 100, where random draws repeat within a second more often).

Standalone: ``python bench/http_bench.py SCENARIO_DIR WORK_DIR [--skip-feast] [--skip-crmfs]``
prints the figures as JSON (needs Redis on 127.0.0.1:6379 and, for Feast, its venv:
``feast_env.py``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis

from crmfs_bench import FEATURES, SEED, Clock, figure, ingest_events
from feast_env import BENCH_DIR, FeastUnavailableError, ensure_feast_venv, feast_child_env
from http_load import LoadError, LoadResult, event_loop_name, post_request, sequential, throughput
from redis_bench import REDIS_URL, open_project
from scenario import ANCHOR

HOST = "127.0.0.1"
WORKERS = 2
SINGLE_WARMUP, SINGLE_CALLS = 500, 5_000
BATCH_WARMUP, BATCH_CALLS, BATCH_SIZE = 20, 500, 100
RPS_CLIENTS = (1, 2, 4, 8)
RPS_WARMUP_S, RPS_MEASURE_S = 1.0, 3.0
# Distinct single-entity requests the throughput runs cycle through: more than they send, so
# an in-process cache serves only the repeats random traffic has anyway.
RPS_POOL = 60_000
# Other processes' CPU (in cores) during a measured run above which the figures get a note.
BUSY_OTHERS = 0.2
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
PREPARE_TIMEOUT_S = 900
FEAST_REDIS_DB = 14  # feast_bench.REDIS_DB (that module imports feast: not importable here)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[http_bench] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Server:
    """One feature server under test: how to start it and how to ask it for features."""

    prefix: str  # of its figures' names
    label: str
    command: list[str]
    env: dict[str, str]
    ready_path: str
    features_path: str
    body: Callable[[Sequence[str]], bytes]  # the request body for these customer ids
    present: Callable[[Any, int], int]  # values served in a decoded response for n ids
    metrics_path: str | None = None  # Prometheus text with cache counters, if any


# --------------------------------------------------------------------------- the two sides


def crmfs_body(ids: Sequence[str]) -> bytes:
    return json.dumps(
        {"features": FEATURES, "entities": [{"customer_id": c} for c in ids]}
    ).encode()


def crmfs_present(response: Any, n: int) -> int:
    """Values not ``missing`` in a ``POST /v1/features`` answer; its shape checked."""
    columns = response["features"]
    if sorted(columns) != sorted(FEATURES):
        raise LoadError(f"crmfs answered features {sorted(columns)}, asked {sorted(FEATURES)}")
    if any(len(c["values"]) != n or len(c["statuses"]) != n for c in columns.values()):
        raise LoadError(f"crmfs answered columns of the wrong length for {n} entities")
    return sum(s != "missing" for c in columns.values() for s in c["statuses"])


def crmfs_server(scenario_dir: Path, work_dir: Path, port: int) -> Server:
    """The Redis bench's project with the scenario ingested and materialized (database
    ``redis_bench.REDIS_DB``, flushed first), served by ``crmfs serve``."""
    events = pq.read_table(scenario_dir / "events.parquet")
    first = int(pc.min(pc.cast(events.column("event_time"), pa.int64())).as_py())
    clock = Clock(first)
    project = work_dir / "crmfs_project"
    store = open_project(project, clock)
    store.apply()
    ingest_events(store, clock, events)
    start = time.perf_counter()
    store.materialize()
    log(f"crmfs: materialized into {REDIS_URL} in {time.perf_counter() - start:.1f} s")
    store.close()
    crmfs = Path(sys.executable).with_name("crmfs")
    command = [str(crmfs), "serve", str(project), "--host", HOST, "--port", str(port)]
    command += ["--workers", str(WORKERS), "--at", ANCHOR.isoformat()]
    return Server(
        "",
        "crmfs",
        command,
        dict(os.environ),
        "/ready",
        "/v1/features",
        crmfs_body,
        crmfs_present,
        "/metrics",
    )


def feast_server(scenario_dir: Path, work_dir: Path, port: int) -> Server:
    """A Feast repo on Redis (``feast_http_bench.py``), served by ``feast serve``."""
    python = ensure_feast_venv()
    repo = work_dir / "feast_repo"
    cmd = [str(python), str(BENCH_DIR / "feast_http_bench.py"), str(scenario_dir), str(repo)]
    env = feast_child_env()
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, text=True, env=env, timeout=PREPARE_TIMEOUT_S, check=False
    )
    if proc.returncode != 0:
        raise FeastUnavailableError(f"feast_http_bench.py failed with exit code {proc.returncode}")
    prepared = json.loads(proc.stdout)
    features: list[str] = prepared["features"]
    log(f"Feast: materialized into Redis db {FEAST_REDIS_DB} in {prepared['materialize_s']} s")

    def body(ids: Sequence[str]) -> bytes:
        return json.dumps({"features": features, "entities": {"customer_id": list(ids)}}).encode()

    def present(response: Any, n: int) -> int:
        names = response["metadata"]["feature_names"]
        results = response["results"]
        if len(results) != len(features) + 1 or len(names) != len(results):
            raise LoadError(f"Feast answered {names}, asked customer_id and {features}")
        if any(len(r["values"]) != n for r in results):
            raise LoadError(f"Feast answered columns of the wrong length for {n} entities")
        return sum(s == "PRESENT" for r in results[1:] for s in r["statuses"])

    command = [str(python.with_name("feast")), "-c", str(repo), "serve", "--host", HOST]
    # No access log: crmfs writes none either, and one line per request is work the other
    # side does not do. Everything else is `feast serve`'s default (gunicorn recycles each
    # worker after about 1,000 requests: the client reopens the connections it closes).
    command += ["--port", str(port), "--workers", str(WORKERS), "--no-access-log"]
    return Server("feast_", "Feast", command, env, "/health", "/get-online-features", body, present)


# --------------------------------------------------------------------------- process handling


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running(server: Server, port: int, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The server started in a session of its own, ready; on exit its whole process group
    (workers included) stopped: SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``."""
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            server.command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server.env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise LoadError(
                    f"{server.label} server exited with code {proc.returncode}:\n{_tail(log_path)}"
                )
            try:
                if _get(port, server.ready_path) == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise LoadError(
                    f"{server.label} server not ready after {READY_TIMEOUT_S:.0f} s:\n"
                    f"{_tail(log_path)}"
                )
            time.sleep(0.2)
        yield proc
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)  # the group of the session the server was started in
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
            # Workers may outlive their master for a moment; the SIGKILL round takes them.
            if sig == signal.SIGKILL or not _group_alive(proc.pid):
                return
        except subprocess.TimeoutExpired:
            continue


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _session_cpu_s(sid: int) -> float:
    """CPU seconds of every process in session ``sid`` (the server's master and workers),
    with the children they reaped (a recycled worker's time lands in its master's)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of stat, counted after the command name
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / CLOCK_TICKS


def _machine_busy_s() -> float:
    """CPU seconds spent by all cores on anything but idling, since boot."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS  # less idle and iowait


def cpu_probe(proc: subprocess.Popen[bytes], redis_url: str) -> Callable[[], dict[str, float]]:
    client = redis.Redis.from_url(redis_url)

    def probe() -> dict[str, float]:
        info = client.info("cpu")
        return {
            "server": _session_cpu_s(proc.pid),
            "redis": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            "machine": _machine_busy_s(),
        }

    return probe


# --------------------------------------------------------------------------- measurement


@dataclass(frozen=True)
class Draws:
    """The customers asked for, the same for both servers."""

    single: list[list[str]]  # SINGLE_WARMUP + SINGLE_CALLS requests of one customer
    batch: list[list[str]]  # BATCH_WARMUP + BATCH_CALLS requests of BATCH_SIZE customers
    pool: list[list[str]]  # RPS_POOL requests of one customer, for the throughput runs


def draw(ids: np.ndarray) -> Draws:
    rng = np.random.default_rng(SEED)
    single = rng.choice(ids, size=SINGLE_WARMUP + SINGLE_CALLS).tolist()
    batch = rng.choice(ids, size=(BATCH_WARMUP + BATCH_CALLS, BATCH_SIZE)).tolist()
    pool = rng.choice(ids, size=RPS_POOL).tolist()
    return Draws([[c] for c in single], batch, [[c] for c in pool])


def check_answer(server: Server, port: int, ids: Sequence[str]) -> int:
    """One request decoded and checked (not timed): status and shape; the values served."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request(
            "POST", server.features_path, server.body(ids), {"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise LoadError(f"{server.label}: HTTP {response.status}: {body[:300]!r}")
    present = server.present(json.loads(body), len(ids))
    log(f"{server.label}: {len(body):,} bytes for {len(ids)} customers, {present} values present")
    return present


def measure(
    server: Server,
    port: int,
    draws: Draws,
    probe: Callable[[], dict[str, float]],
    notes: list[str],
) -> list[dict[str, Any]]:
    def requests(sets: list[list[str]]) -> list[bytes]:
        return [post_request(HOST, port, server.features_path, server.body(ids)) for ids in sets]

    if not check_answer(server, port, draws.batch[0]):
        notes.append(
            f"{server.label}'s server answered {BATCH_SIZE} customers without one value"
            " (every status missing): its HTTP figures are of empty answers"
        )
    name = server.prefix + "http"
    cache = CacheShare(server, port, requests(draws.single[:1])[0])
    single = sequential(HOST, port, requests(draws.single), SINGLE_WARMUP, probe)
    single.check(f"{server.label} single")
    log(f"{server.label} single: {single.summary()}")
    cache.log("single")
    batch = sequential(HOST, port, requests(draws.batch), BATCH_WARMUP, probe)
    batch.check(f"{server.label} batch of {BATCH_SIZE}")
    log(f"{server.label} batch of {BATCH_SIZE}: {batch.summary()}")
    cache.log(f"batch of {BATCH_SIZE}")
    pool = requests(draws.pool)
    runs: list[LoadResult] = []
    for i, clients in enumerate(RPS_CLIENTS):
        # Each run starts on customers of its own, not where the last one started.
        start = i * len(pool) // len(RPS_CLIENTS)
        ordered = pool[start:] + pool[:start]
        run = throughput(HOST, port, ordered, clients, RPS_WARMUP_S, RPS_MEASURE_S, probe)
        run.check(f"{server.label} with {clients} clients")
        log(f"{server.label} throughput, {run.summary()}")
        runs.append(run)
    cache.log("throughput runs")
    best = max(runs, key=lambda r: r.rps)
    log(f"{server.label}: best throughput with {best.clients} clients; {cpu_per_request(best)}")
    busiest = max((r.other_cpu_s or 0.0) / r.seconds for r in [single, batch, *runs])
    if busiest > BUSY_OTHERS:
        notes.append(
            f"while {server.label}'s server was measured, other processes used up to"
            f" {busiest:.0%} of a core (of 2): its HTTP figures are lower than on an idle machine"
        )
    return [
        figure(f"{name}_single_p50_ms", single.percentile_ms(50), "ms"),
        figure(f"{name}_single_p99_ms", single.percentile_ms(99), "ms"),
        figure(f"{name}_rps_2cores", best.rps, "requests/s"),
        figure(f"{name}_batch100_p99_ms", batch.percentile_ms(99), "ms"),
    ]


def cache_counters(port: int, path: str | None) -> tuple[float, float] | None:
    """The server's in-process cache hits and misses so far, from its metrics (None: no
    metrics, or no cache counters in them)."""
    if path is None:
        return None
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    counts = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("crmfs_cache_hits_total", "crmfs_cache_misses_total"):
            counts[name] = float(value)
    if len(counts) != 2:
        return None
    return counts["crmfs_cache_hits_total"], counts["crmfs_cache_misses_total"]


class CacheShare:
    """Logs the share of entity reads the server's cache answered during each phase: random
    customers repeat within the cache's lifetime (1 s by default) only as often as a random
    draw does, more in batches of 100 than one at a time.

    A crmfs worker moves its cache counts into its metrics at most once a second, while
    serving; so before reading them, wait that second and send a few requests on fresh
    connections (they reach both workers, most likely): approximate, for the log only."""

    SETTLE_S = 1.2
    NUDGES = 8

    def __init__(self, server: Server, port: int, nudge: bytes) -> None:
        self.server, self.port, self.nudge = server, port, nudge
        self.last = self._counters()

    def _counters(self) -> tuple[float, float] | None:
        if self.server.metrics_path is None:
            return None
        time.sleep(self.SETTLE_S)
        for _ in range(self.NUDGES):
            with socket.create_connection((HOST, self.port), timeout=10) as sock:
                sock.sendall(self.nudge)
                while not sock.recv(1 << 16).endswith(b"}"):
                    pass
        return cache_counters(self.port, self.server.metrics_path)

    def log(self, phase: str) -> None:
        now = self._counters()
        if now is None or self.last is None:
            return
        hits, misses = now[0] - self.last[0], now[1] - self.last[1]
        self.last = now
        if hits + misses:
            log(f"{self.server.label} {phase}: cache hits {hits / (hits + misses):.1%} of reads")


def cpu_per_request(run: LoadResult) -> str:
    """CPU time per request by part, and the rate those parts alone would allow on 2 cores:
    what the figure would be on a machine doing nothing else (a ceiling, not a figure)."""
    parts = {k: v for k, v in run.cpu_s.items() if k != "machine"}
    parts["client"] = run.client_cpu_s
    each = {k: v / run.requests * 1e6 for k, v in parts.items()}
    text = ", ".join(f"{k} {us:.0f} us" for k, us in each.items())
    ceiling = 2e6 / sum(each.values())
    return f"CPU per request: {text}; 2 cores busy only with these: {ceiling:,.0f} rps"


def run_side(
    make: Callable[[int], Server], draws: Draws, work_dir: Path, redis_url: str, notes: list[str]
) -> list[dict[str, Any]]:
    port = free_port()
    server = make(port)
    with running(server, port, work_dir / f"{server.label.lower()}-server.log") as proc:
        log(f"{server.label}: serving on {HOST}:{port} with {WORKERS} workers")
        return measure(server, port, draws, cpu_probe(proc, redis_url), notes)


def run_http_bench(
    scenario_dir: Path,
    work_dir: Path,
    notes: list[str],
    *,
    crmfs: bool = True,
    feast: bool = True,
) -> list[dict[str, Any]]:
    """Both servers' figures (Feast's prefixed ``feast_``); a side that fails is a note."""
    wall = time.perf_counter()
    scenario_dir, work_dir = Path(scenario_dir).resolve(), Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    customers = pq.read_table(scenario_dir / "events.parquet", columns=["customer_id"])
    ids = pc.unique(customers.column("customer_id")).to_numpy(zero_copy_only=False)
    draws = draw(ids)
    log(f"client: {event_loop_name()} event loop, {len(ids):,} customers to draw from")
    figures: list[dict[str, Any]] = []
    sides: list[tuple[str, Callable[[int], Server], str]] = []
    if crmfs:
        sides.append(("crmfs", lambda port: crmfs_server(scenario_dir, work_dir, port), REDIS_URL))
    if feast:
        feast_url = f"redis://{HOST}:6379/{FEAST_REDIS_DB}"
        sides.append(("Feast", lambda port: feast_server(scenario_dir, work_dir, port), feast_url))
    for label, make, redis_url in sides:
        try:
            figures += run_side(make, draws, work_dir, redis_url, notes)
        except Exception as exc:
            notes.append(f"{label} HTTP bench failed: {type(exc).__name__}: {exc}")
            log(notes[-1])
    log(f"HTTP run took {time.perf_counter() - wall:.0f} s")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario_dir", type=Path)
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--skip-feast", action="store_true", help="leave Feast's server out")
    parser.add_argument("--skip-crmfs", action="store_true", help="leave crmfs's server out")
    args = parser.parse_args(argv)
    notes: list[str] = []
    figures = run_http_bench(
        args.scenario_dir,
        args.work_dir,
        notes,
        crmfs=not args.skip_crmfs,
        feast=not args.skip_feast,
    )
    print(json.dumps(figures, indent=2))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    sides = (not args.skip_crmfs) + (not args.skip_feast)
    return 0 if len(figures) == 4 * sides else 1  # a side without figures failed


if __name__ == "__main__":
    sys.exit(main())
