"""``crmfs demo``: the whole slice end to end on the embedded default, with its figures."""

from __future__ import annotations

import random
import shutil
import time
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from crmfs.demo_definitions import DEFINITIONS
from crmfs.demo_identity import show_identity
from crmfs.demo_serving import show_serving
from crmfs.parity import columns_match
from crmfs.store import FeatureStore
from crmfs.synthetic import generate_crm
from crmfs.timestamps import to_micros

EVENT_SOURCES = ("web_events", "purchases", "email_events", "support_tickets")
# CRM tables arrive as their records change (they have no separate arrival time).
CRM_SOURCES = {
    "crm_a_contacts": "updated_at",
    "crm_b_leads": "created_at",
    "marketing_contacts": "subscribed_at",
}
MICRO_BATCH = timedelta(hours=6)


def run_demo(folder: Path, scale: int, seed: int, console: Console) -> bool:
    """Run every step; returns False when parity fails."""
    figures: list[tuple[str, str]] = []
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    started = time.perf_counter()

    console.rule("1. generate a synthetic CRM")
    crm = generate_crm(folder / "synthetic", scale=scale, seed=seed, progress=None)
    events = sum(crm.counts[s] for s in (*EVENT_SOURCES, *CRM_SOURCES))
    console.print(f"{scale:,} people, {events:,} events over 90 days in {len(crm.files)} tables")

    console.rule("2. define and apply")
    (folder / "crmfs.yaml").write_text(
        "project: demo\ndefinitions: definitions.py\ndata_dir: data\n"
    )
    (folder / "definitions.py").write_text(DEFINITIONS)
    clock = [to_micros(crm.end) - 91 * 86_400_000_000]
    store = FeatureStore(folder, clock=lambda: clock[0])
    for change in store.plan():
        console.print(f"  {change.change.value:8} {change.kind} {change.name}")
    store.apply()

    console.rule("3. stream 90 days of events and CRM records in 6-hour micro-batches")
    batches = _micro_batches(crm.files)
    t0 = time.perf_counter()
    totals = {"accepted": 0, "duplicates": 0, "quarantined": 0}
    for arrival, source, table in batches:
        clock[0] = max(clock[0], arrival)
        report = store.ingest(source, table)
        for key in totals:
            totals[key] += getattr(report, key)
    bad = store.ingest("purchases", _bad_records(crm.end))
    totals["quarantined"] += bad.quarantined
    elapsed = time.perf_counter() - t0
    rate = events / elapsed
    console.print(
        f"{totals['accepted']:,} accepted, {totals['duplicates']:,} duplicates dropped,"
        f" {totals['quarantined']:,} quarantined ({len(batches):,} batches, {rate:,.0f} events/s)"
    )
    for record in store.quarantine(limit=3):
        console.print(f"  quarantined: {record.reason}")
    figures += [("ingest (events/s, micro-batches incl. fsync)", f"{rate:,.0f}")]
    figures += [
        (
            "duplicates dropped / quarantined",
            f"{totals['duplicates']:,} / {totals['quarantined']:,}",
        )
    ]

    console.rule("4. online reads with freshness")
    now = crm.end
    customers = _customers(crm.files["purchases"])
    rng = random.Random(seed)
    sample = rng.sample(customers, min(3, len(customers)))
    response = store.get_online_features(
        "recommender", [{"customer_id": c} for c in sample], now=now
    )
    _print_online(console, sample, response)
    single = []
    for customer in rng.choices(customers, k=2000):
        t = time.perf_counter()
        store.get_online_features("recommender", [{"customer_id": customer}], now=now)
        single.append(time.perf_counter() - t)
    single.sort()
    t = time.perf_counter()
    for _ in range(50):
        store.get_online_features(
            "recommender", [{"customer_id": c} for c in rng.choices(customers, k=100)], now=now
        )
    batch_rate = 5000 / (time.perf_counter() - t)
    figures += [
        (
            "online read, 1 entity, p50 / p99 (ms)",
            f"{single[1000] * 1e3:.3f} / {single[1980] * 1e3:.3f}",
        ),
        ("online read, 100 entities per call (rows/s)", f"{batch_rate:,.0f}"),
    ]

    console.rule("5. point-in-time training set (batch runtime, DuckDB)")
    entity_df = _label_rows(crm.files["purchases"], rng)
    t = time.perf_counter()
    training = store.get_historical_features(entity_df, "recommender")
    pit = time.perf_counter() - t
    served = store.get_historical_features(entity_df, "recommender", as_served=True)
    frame = training.to_df()
    console.print(frame.head(5).to_string(max_colwidth=40))
    figures += [
        (f"training set, {len(frame):,} rows x {frame.shape[1] - 2} features (s)", f"{pit:.2f}")
    ]
    late = int((served.to_df()["orders_90d"] != frame["orders_90d"]).sum())
    console.print(
        f"rows whose orders_90d differ as served (late events not yet ingested): {late:,}"
    )
    console.print(f"feature versions: {training.feature_versions}")

    console.rule("6. golden ids: one person across CRM, leads, newsletter and support")
    figures += show_identity(store, crm.files, now, console)

    console.rule("7. backfill equals streaming")
    probe = [{"customer_id": c} for c in customers[:500]]
    before = store.get_online_features("recommender", probe, now=now).values
    t = time.perf_counter()
    store.materialize()
    backfill = time.perf_counter() - t
    after = store.get_online_features("recommender", probe, now=now).values
    same = columns_match(before, after)  # float sums may differ in the last bit
    console.print(f"materialize: {backfill:.2f} s; online values identical to streaming: {same}")
    figures += [("backfill of the whole log (s)", f"{backfill:.2f}")]

    console.rule("8. parity: replay the log, online vs offline as served")
    t = time.perf_counter()
    # Views keyed by golden ids or relations follow merges, splits and moves, which a replay
    # of the log alone does not repeat: they are compared as the live store followed them.
    parity = store.check_parity(check_times=40, entities_per_check=20)
    console.print(
        f"{parity.checks:,} values at {parity.check_times} check times over {len(parity.features)} features:"
        f" {parity.mismatches} mismatches ({time.perf_counter() - t:.1f} s)"
    )
    figures += [("parity checks / mismatches", f"{parity.checks:,} / {parity.mismatches}")]

    console.rule("9. serve over HTTP: keys, masking, consent")
    clock[0] = max(clock[0], to_micros(now))  # consents are given now
    serving_figures, consent_honoured = show_serving(store, customers, now, console)
    figures += serving_figures

    console.rule("summary")
    table = Table("figure", "value")
    for name, value in figures:
        table.add_row(name, value)
    table.add_row("demo wall time (s)", f"{time.perf_counter() - started:.1f}")
    console.print(table)
    store.close()
    ok = parity.ok and same and consent_honoured
    console.print("[green]demo OK[/green]" if ok else "[red]demo FAILED[/red]")
    return ok


def _micro_batches(files: dict[str, Path]) -> list[tuple[int, str, pa.Table]]:
    """Events of every source cut into 6-hour windows of arrival time, in arrival order."""
    step = int(MICRO_BATCH.total_seconds() * 1_000_000)
    out: list[tuple[int, str, pa.Table]] = []
    for source in (*EVENT_SOURCES, *CRM_SOURCES):
        table = pq.read_table(files[source])
        column = CRM_SOURCES.get(source, "arrival_time")
        arrival = pc.cast(
            pc.cast(table[column], pa.timestamp("us", tz="UTC")), pa.int64()
        ).to_numpy()
        bucket = arrival // step
        order = bucket.argsort(kind="stable")
        table, bucket, arrival = table.take(order), bucket[order], arrival[order]
        starts = [0, *((bucket[1:] != bucket[:-1]).nonzero()[0] + 1), len(bucket)]
        for a, b in pairwise(starts):
            out.append((int(arrival[a:b].max()), source, table.slice(a, b - a)))
    out.sort(key=lambda item: item[0])
    return out


def _bad_records(end: Any) -> list[dict[str, Any]]:
    return [
        {"event_id": "bad-1", "event_time": "yesterday", "customer_id": "x", "amount": 1.0},
        {
            "event_id": "bad-2",
            "event_time": end.replace(tzinfo=None).isoformat(),
            "customer_id": "x",
            "amount": 2.0,
        },
        {"event_id": "bad-3", "event_time": end.isoformat(), "customer_id": "x", "amount": "ten"},
        {"event_id": "bad-4", "event_time": end.isoformat(), "amount": 3.0},
    ]


def _customers(path: Path) -> list[str]:
    column = pq.read_table(path, columns=["customer_id"])["customer_id"]
    return sorted(v for v in pc.unique(column).to_pylist() if v is not None)


def _label_rows(path: Path, rng: random.Random) -> Any:
    """Training rows: each purchase's customer one hour before it (a "will buy" example)."""
    table = pq.read_table(path, columns=["customer_id", "event_time"])
    frame = table.to_pandas().drop_duplicates()
    frame["event_timestamp"] = frame["event_time"] - timedelta(hours=1)
    return frame[["customer_id", "event_timestamp"]].reset_index(drop=True)


def _print_online(console: Console, keys: list[str], response: Any) -> None:
    table = Table("customer", "feature", "value", "status", "age")
    for key, row in zip(keys, response.rows(), strict=True):
        for name, cell in list(row.items())[:6]:
            age = "" if cell["age_s"] is None else f"{cell['age_s'] / 3600:.1f} h"
            table.add_row(key, name, str(cell["value"])[:40], cell["status"], age)
    console.print(table)
