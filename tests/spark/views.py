"""Feature views of the Spark suite: every function, several windows and hops, filters, TTL.

Float fields come in two kinds. ``amount`` holds multiples of 1/4 within +-100: every partial
sum of them is exact in binary floating point, so sums and means are equal whatever order
an engine adds them in. ``price`` holds arbitrary floats (0.1, 1/3, -0.0 ...) and is only read
by functions that pick a value rather than add (min, max, last, latest, count_distinct),
which are exact in any order.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from crmfs import Aggregation, Entity, EventSource, FeatureView, Latest, col
from crmfs.timestamps import from_micros, to_micros

BASE = to_micros(datetime(2026, 3, 1, tzinfo=UTC))
S = 1_000_000
KEYS = ["a", "b", "c"]
# A literal with a quote and a backslash: DuckDB and Spark escape strings differently.
ODD_KIND = "it's a \\ kind"

customer = Entity("customer", join_key="customer_id")
events = EventSource(
    "events",
    schema={
        "event_id": "string",
        "ts": "timestamp",
        "seen": "timestamp",
        "customer_id": "string",
        "amount": "float",
        "price": "float",
        "qty": "int",
        "item": "string",
        "kind": "string",
        "flag": "bool",
    },
    event_id="event_id",
    event_time="ts",
)

ACTIVITY = FeatureView(
    "activity",
    entity=customer,
    source=events,
    features=[
        Aggregation("n", "count", windows=["10s", "1m", "5m"], hop="5s"),
        Aggregation("n_exact", "count", windows=["30s"], hop="1s"),
        Aggregation("qty_n", "count", windows=["1m"], field="qty", hop="10s"),
        Aggregation("qty", "sum", windows=["1m"], field="qty", hop="10s"),
        Aggregation("amount", "sum", windows=["30s", "2m"], field="amount", hop="10s"),
        Aggregation("avg", "mean", windows=["1m"], field="amount", hop="10s"),
        Aggregation("qty_avg", "mean", windows=["1m"], field="qty", hop="10s"),
        Aggregation("low", "min", windows=["1m"], field="price", hop="10s"),
        Aggregation("high", "max", windows=["1m"], field="price", hop="10s"),
        Aggregation("top_item", "max", windows=["1m"], field="item", hop="10s"),
        Aggregation("first_seen", "min", windows=["2m"], field="seen", hop="20s"),
        Aggregation("items", "count_distinct", windows=["1m"], field="item", hop="10s"),
        Aggregation("prices", "count_distinct", windows=["1m"], field="price", hop="10s"),
        Aggregation("last_item", "last", windows=["30s"], field="item", hop="5s"),
        Aggregation("last_seen", "last", windows=["30s"], field="seen", hop="5s"),
        Aggregation("recent", "last_n", windows=["2m"], field="item", hop="20s", n=3),
        Aggregation("recent_prices", "last_n", windows=["1m"], field="price", hop="10s", n=2),
        Latest("kind_now", "kind"),
        Latest("price_now", "price"),
        Latest("seen_now", "seen"),
        Latest("flag_now", "flag"),
    ],
    filter=((col("kind") != "skip") | col("kind").is_null()) & ~col("item").isin(["bot"]),
    ttl="90s",
)
# No TTL, no latest values but one without TTL elsewhere, a filter on an odd literal.
PLAIN = FeatureView(
    "plain",
    entity=customer,
    source=events,
    features=[
        Aggregation("n", "count", windows=["1m"], hop="1s"),
        Aggregation("spend", "sum", windows=["1m"], field="amount", hop="1s"),
    ],
    filter=col("kind") != ODD_KIND,
)
LATEST_ONLY = FeatureView(
    "latest_only",
    entity=customer,
    source=events,
    features=[Latest("item_now", "item"), Latest("qty_now", "qty")],
    filter=(col("flag") == True) | col("flag").is_null(),  # noqa: E712  # a filter value
)
VIEWS = [ACTIVITY, PLAIN, LATEST_ONLY]

_PRICES = [None, 0.1, 1 / 3, -0.0, 0.0, 2.5e-7, -12.75, 1e300, 0.30000000000000004]


def event_records(seed: int, count: int = 300) -> list[tuple[int, dict[str, Any]]]:
    """``count`` events over 150 s for the keys (and a few without a key): many at the same
    time for a key, some late. Each with its arrival offset (microseconds after BASE)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        at = rng.choice([rng.randrange(0, 150) * S, rng.randrange(0, 150 * S), 40 * S])
        arrival = at + rng.choice([0, 0, rng.randrange(0, 60 * S)])
        out.append(
            (
                arrival,
                {
                    "event_id": f"e{i}",
                    "ts": from_micros(BASE + at),
                    "seen": rng.choice([None, from_micros(BASE - rng.randrange(0, 10**9))]),
                    "customer_id": rng.choice([*KEYS, *KEYS, None]),
                    "amount": rng.choice([None, rng.randrange(-400, 400) / 4]),
                    "price": rng.choice(_PRICES),
                    "qty": rng.choice([None, rng.randrange(-5, 50)]),
                    "item": rng.choice([None, "x", "y", "z", "w", "bot"]),
                    "kind": rng.choice([None, "view", "buy", "skip", ODD_KIND]),
                    "flag": rng.choice([None, True, False]),
                },
            )
        )
    return sorted(out, key=lambda r: r[0])
