"""Run the benchmark: crmfs and Feast on the same scenario, side by side (``make bench``).

Usage::

    python bench/run.py               # full run: 1M events, 100k customers, crmfs then Feast
    python bench/run.py --skip-feast  # crmfs only
    python bench/run.py --quick       # smoke run: 100k events, 10k customers

The HTTP serving bench (``http_bench.py``: crmfs's feature server and Feast's, one client) runs
last; with ``--skip-feast`` it measures crmfs's server only.

The scenario is written once into ``bench/.work/scenario`` (``bench/.work/scenario-quick`` for
``--quick``) and reused. A Feast failure (no network to install it, a crash) becomes a note under
the table, never a failed run. The figures (crmfs, then ``feast_`` ones) are written as one JSON
list to ``bench/results/latest.json``; a ``--quick`` run writes ``bench/results/quick.json``
instead, so a smoke run never overwrites the figures of a full run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from crmfs_bench import run_crmfs_bench
from feast_env import FeastUnavailableError, run_feast_bench
from febrl_data import FebrlUnavailableError
from identity_bench import run_identity_bench
from redis_bench import run_redis_bench
from scenario import write_scenario

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / ".work"
RESULTS_DIR = BENCH_DIR / "results"
SCENARIO_FILES = ("events", "entities_100k", "entities_1m")

# The targets for crmfs: (comparison, bound).
TARGETS: dict[str, tuple[str, float]] = {
    "pit_100k_s": ("<=", 0.4),
    "pit_1m_s": ("<=", 1.5),
    "pit_1m_peak_mb": ("<=", 600),
    "online_single_p99_ms": ("<=", 0.25),
    "online_batch100_rows_per_s": (">=", 100_000),
    "ingest_events_per_s": (">=", 50_000),
    "freshness_p99_ms": ("<=", 100),
    "backfill_1m_s": ("<=", 3),
    "febrl4_f1": (">=", 0.997),
    "febrl3_f1": (">=", 0.99),
    "identity_match_p99_ms": ("<=", 2),
    "identity_records_per_s": (">=", 20_000),
    "synthetic_cluster_f1": (">=", 0.98),
    "synthetic_stream_differences": ("<=", 0),
    "golden_id_churn": ("<=", 0),
    "redis_online_single_p99_ms": ("<=", 0.5),
    "redis_online_batch100_rows_per_s": (">=", 80_000),
    "redis_materialize_1m_s": ("<=", 4),
    "worker_events_per_s_1": (">=", 30_000),
    "http_single_p99_ms": ("<=", 2),
    "http_rps_2cores": (">=", 3_000),
    "http_batch100_p99_ms": ("<=", 10),
}
QUICK = {"customers": 10_000, "events": 100_000}


def ensure_scenario(scenario_dir: Path, quick: bool) -> None:
    if all((scenario_dir / f"{stem}.parquet").exists() for stem in SCENARIO_FILES):
        print(f"scenario: reusing {scenario_dir}", file=sys.stderr)
        return
    start = time.perf_counter()
    write_scenario(scenario_dir, **(QUICK if quick else {}))
    print(f"scenario: written in {time.perf_counter() - start:.1f} s", file=sys.stderr)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4f}" if abs(value) < 1 else f"{value:.3f}"


def _meets(name: str, value: float | None) -> str:
    target = TARGETS.get(name)
    if target is None or value is None:
        return ""
    op, bound = target
    ok = value <= bound if op == "<=" else value >= bound
    return "[green]yes[/green]" if ok else "[red]no[/red]"


def render(crmfs: list[dict[str, Any]], feast: list[dict[str, Any]], notes: list[str]) -> None:
    ours = {f["name"]: f for f in crmfs}
    theirs = {f["name"]: f for f in feast}
    names = list(ours)
    names += [n for n in TARGETS if n not in ours]
    # Feast figures without a crmfs twin (e.g. its file offline store) get a row of their own.
    names += [n.removeprefix("feast_") for n in theirs if n.removeprefix("feast_") not in names]

    table = Table(title="crmfs vs Feast")
    table.add_column("figure", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    table.add_column("crmfs", no_wrap=True, justify="right")
    table.add_column("feast", no_wrap=True, justify="right")
    table.add_column("target", no_wrap=True, justify="right")
    table.add_column("crmfs meets", justify="center")
    for name in names:
        mine = ours.get(name)
        other = theirs.get(f"feast_{name}")
        unit = (mine or other or {}).get("unit", "")
        value = None if mine is None else mine["value"]
        target = TARGETS.get(name)
        table.add_row(
            name,
            unit,
            _fmt(value),
            _fmt(None if other is None else other["value"]),
            "" if target is None else f"{target[0]} {target[1]:,g}",
            _meets(name, value),
        )
    console = Console()
    console.print(table)
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


def run_backend_benches(scenario_dir: Path, suffix: str, notes: list[str]) -> list[dict[str, Any]]:
    """The production backends' figures: Redis online store, Spark training set (on the store
    the crmfs bench left), stream workers; each one's failure a note."""
    figures: list[dict[str, Any]] = []
    try:
        figures += run_redis_bench(scenario_dir, WORK_DIR / f"redis{suffix}")
    except Exception as exc:
        traceback.print_exc()
        notes.append(f"Redis bench failed: {type(exc).__name__}: {exc}")
    try:
        from worker_bench import run_worker_bench

        figures += run_worker_bench(scenario_dir, WORK_DIR / f"workers{suffix}")
    except Exception as exc:
        traceback.print_exc()
        notes.append(f"stream-worker bench failed: {type(exc).__name__}: {exc}")
    try:
        from spark_bench import run_spark_bench

        store_dir = WORK_DIR / f"crmfs{suffix}" / "store"
        figures += run_spark_bench(store_dir, scenario_dir / "entities_1m.parquet")
    except Exception as exc:
        traceback.print_exc()
        notes.append(f"Spark bench failed: {type(exc).__name__}: {exc}")
    return figures


def run_http_benches(
    scenario_dir: Path, suffix: str, notes: list[str], feast: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The HTTP feature servers' figures, (crmfs's, Feast's): both are measured in one bench
    (same data, same client), after the Feast side so its venv exists."""
    start = time.perf_counter()
    try:
        from http_bench import run_http_bench

        figures = run_http_bench(scenario_dir, WORK_DIR / f"http{suffix}", notes, feast=feast)
    except Exception as exc:
        traceback.print_exc()
        notes.append(f"HTTP bench failed: {type(exc).__name__}: {exc}")
        figures = []
    notes.append(f"HTTP serving bench took {time.perf_counter() - start:.0f} s")
    theirs = [f for f in figures if f["name"].startswith("feast_")]
    return [f for f in figures if not f["name"].startswith("feast_")], theirs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-feast", action="store_true", help="run the crmfs side only")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run on 100k events and 10k customers"
    )
    args = parser.parse_args(argv)

    wall = time.perf_counter()
    suffix = "-quick" if args.quick else ""
    scenario_dir = WORK_DIR / f"scenario{suffix}"
    ensure_scenario(scenario_dir, args.quick)

    notes: list[str] = []
    if args.quick:
        notes.append("quick run (100k events, 10k customers): figures are not comparable")
    crmfs: list[dict[str, Any]] = []
    try:
        crmfs = run_crmfs_bench(scenario_dir, WORK_DIR / f"crmfs{suffix}")
    except Exception as exc:
        traceback.print_exc()
        notes.append(f"crmfs bench failed: {type(exc).__name__}: {exc}")
    if not args.quick:
        try:
            crmfs += run_identity_bench(WORK_DIR, notes)
        except FebrlUnavailableError as exc:
            notes.append(f"identity bench skipped, FEBRL unavailable: {exc}")
        except Exception as exc:
            traceback.print_exc()
            notes.append(f"identity bench failed: {type(exc).__name__}: {exc}")
    crmfs += run_backend_benches(scenario_dir, suffix, notes)
    crmfs_s = time.perf_counter() - wall

    feast: list[dict[str, Any]] = []
    if args.skip_feast:
        notes.append("Feast skipped (--skip-feast)")
    else:
        start = time.perf_counter()
        try:
            feast = run_feast_bench(scenario_dir, WORK_DIR / f"feast{suffix}")
        except FeastUnavailableError as exc:
            notes.append(f"Feast unavailable: {exc}")
        except Exception as exc:
            traceback.print_exc()
            notes.append(f"Feast bench failed: {type(exc).__name__}: {exc}")
        notes.append(f"Feast side took {time.perf_counter() - start:.0f} s")

    ours, theirs = run_http_benches(scenario_dir, suffix, notes, feast=not args.skip_feast)
    crmfs += ours
    feast += theirs

    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / ("quick.json" if args.quick else "latest.json")
    out.write_text(json.dumps(crmfs + feast, indent=2) + "\n")
    notes.append(f"crmfs side took {crmfs_s:.0f} s (scenario included); figures in {out}")
    render(crmfs, feast, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
