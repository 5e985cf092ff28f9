"""Shared benchmark scenario: synthetic CRM events and training-set entity rows.

Both sides of the benchmark (crmfs and Feast) read the same files written here, so their figures
are comparable. Generation is deterministic for a given seed (numpy's PCG64 stream) and takes a
few seconds for the default 1M events: everything is vectorised in numpy, and the string columns
are built with pyarrow compute kernels instead of Python string formatting.

Usage: ``python bench/scenario.py OUT_DIR`` or ``write_scenario(Path(OUT_DIR))``.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# A fixed anchor (not "now") keeps the data, and so every figure measured on it, reproducible.
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
_US_PER_DAY = 86_400 * 1_000_000
_ANCHOR_US = int(ANCHOR.timestamp()) * 1_000_000

TS_TYPE = pa.timestamp("us", tz="UTC")
N_ITEMS = 5_000
# Training sets are drawn from the most recent 60 days so that a 90-day feature TTL (and 30-day
# windows) always has history behind every entity row.
ENTITY_WINDOW_DAYS = 60
ENTITY_SIZES = {"entities_100k": 100_000, "entities_1m": 1_000_000}

EVENT_TYPES = ("view", "click", "purchase")
EVENT_TYPE_P = (0.80, 0.15, 0.05)  # funnel shape: most events are views, few are purchases
CHANNELS = ("web", "email", "app", "store")
CHANNEL_P = (0.45, 0.15, 0.30, 0.10)
# Lognormal sigma of per-customer activity: with 1.5, the top 1% of customers produce ~20% of
# events while many produce none, which is what CRM event logs look like.
ACTIVITY_SIGMA = 1.5
ITEM_ZIPF_S = 1.1  # popularity exponent: a few items dominate, with a long tail


def _padded_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded decimal ``numbers``, e.g. ("c", 1, 7) -> "c0000001"."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _categorical(rng: np.random.Generator, labels: tuple[str, ...], p: tuple[float, ...], n: int):
    """``n`` labels drawn with probabilities ``p``, as a pyarrow string array."""
    codes = rng.choice(len(labels), size=n, p=np.asarray(p))
    return pc.take(pa.array(labels, pa.string()), pa.array(codes, pa.int32()))


def _timestamps(rng: np.random.Generator, n: int, days: int) -> np.ndarray:
    """``n`` uniform microsecond timestamps in [ANCHOR - days, ANCHOR)."""
    return _ANCHOR_US - 1 - rng.integers(0, days * _US_PER_DAY, size=n, dtype=np.int64)


def _events_table(rng: np.random.Generator, customers: int, events: int, days: int) -> pa.Table:
    activity = rng.lognormal(mean=0.0, sigma=ACTIVITY_SIGMA, size=customers)
    customer_idx = rng.choice(customers, size=events, p=activity / activity.sum())

    item_p = 1.0 / np.arange(1, N_ITEMS + 1, dtype=np.float64) ** ITEM_ZIPF_S
    item_idx = rng.choice(N_ITEMS, size=events, p=item_p / item_p.sum())

    event_time = _timestamps(rng, events, days)
    event_type = _categorical(rng, EVENT_TYPES, EVENT_TYPE_P, events)
    channel = _categorical(rng, CHANNELS, CHANNEL_P, events)

    # Basket values: lognormal around ~35, rounded to cents; null for non-purchase events.
    amount = np.round(rng.lognormal(mean=3.3, sigma=0.8, size=events), 2)
    is_purchase = pc.equal(event_type, "purchase").to_numpy(zero_copy_only=False)
    amount_arr = pa.array(amount, pa.float64(), mask=~is_purchase)

    table = pa.table(
        {
            "customer_id": _padded_ids("c", customer_idx + 1, 7),
            "event_time": pa.array(event_time, pa.int64()).cast(TS_TYPE),
            "event_type": event_type,
            "item_id": _padded_ids("i", item_idx + 1, 5),
            "channel": channel,
            "amount": amount_arr,
        }
    )
    # Log order (by time) is what a real export looks like; event ids follow that order so they
    # are unique and monotonic.
    table = table.take(pc.sort_indices(table, sort_keys=[("event_time", "ascending")]))
    event_id = _padded_ids("e", np.arange(1, events + 1), 8)
    return table.add_column(1, "event_id", event_id)


def _entities_table(rng: np.random.Generator, customers: int, rows: int) -> pa.Table:
    customer_idx = rng.integers(0, customers, size=rows)
    ts = _timestamps(rng, rows, ENTITY_WINDOW_DAYS)
    return pa.table(
        {
            "customer_id": _padded_ids("c", customer_idx + 1, 7),
            "event_timestamp": pa.array(ts, pa.int64()).cast(TS_TYPE),
        }
    )


def write_scenario(
    out_dir: Path,
    customers: int = 100_000,
    events: int = 1_000_000,
    days: int = 90,
    seed: int = 7,
) -> dict[str, Path]:
    """Write ``events.parquet``, ``entities_100k.parquet`` and ``entities_1m.parquet``.

    Returns the written paths keyed by file stem ("events", "entities_100k", "entities_1m").
    """
    if days < ENTITY_WINDOW_DAYS:
        raise ValueError(f"days must be >= {ENTITY_WINDOW_DAYS} (the entity-row window)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # One generator per file, derived from the seed, so each file is reproducible on its own
    # (changing the event count does not reshuffle the entity rows, and vice versa).
    events_ss, *entity_ss = np.random.SeedSequence(seed).spawn(1 + len(ENTITY_SIZES))

    paths: dict[str, Path] = {}
    paths["events"] = out_dir / "events.parquet"
    events_rng = np.random.default_rng(events_ss)
    pq.write_table(_events_table(events_rng, customers, events, days), paths["events"])
    for (stem, rows), ss in zip(ENTITY_SIZES.items(), entity_ss, strict=True):
        paths[stem] = out_dir / f"{stem}.parquet"
        table = _entities_table(np.random.default_rng(ss), customers, rows)
        pq.write_table(table, paths[stem])
    return paths


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python bench/scenario.py OUT_DIR", file=sys.stderr)
        return 2
    for stem, path in write_scenario(Path(args[0])).items():
        print(f"{stem}: {path} ({pq.read_metadata(path).num_rows} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
