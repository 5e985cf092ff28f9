"""Streaming runtime = batch runtime = reference, on adversarial event streams."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmfs.definitions import Aggregation, Entity, EventSource, FeatureView, Latest, col
from crmfs.store import FeatureStore
from crmfs.timestamps import from_micros, to_micros
from tests.properties.reference import RefEvent, RefWindow, latest_value, visible, window_value

BASE = to_micros(datetime(2025, 3, 1, tzinfo=UTC))
S = 1_000_000
KEYS = ["a", "b", "c"]
WINDOWS = [  # (name, function, field, window s, hop s, n)
    ("n", "count", None, 10, 5),
    ("n20", "count", None, 20, 5),  # two window lengths in one hop group
    ("recent20", "last_n", "item", 20, 5),
    ("n", "count", None, 60, 60),
    ("qty_n", "count", "qty", 10, 1),
    ("amount", "sum", "amount", 10, 5),
    ("amount", "sum", "amount", 60, 20),
    ("qty", "sum", "qty", 30, 10),
    ("avg", "mean", "amount", 30, 10),
    ("qty_avg", "mean", "qty", 30, 10),
    ("low", "min", "amount", 10, 5),
    ("high", "max", "item", 60, 60),
    ("items", "count_distinct", "item", 30, 10),
    ("last_item", "last", "item", 10, 5),
    ("recent", "last_n", "item", 60, 20),
]
TTL = 40

customer = Entity("customer", join_key="customer_id")
events_source = EventSource(
    "events",
    schema={
        "event_id": "string",
        "ts": "timestamp",
        "customer_id": "string",
        "amount": "float",
        "qty": "int",
        "item": "string",
        "kind": "string",
    },
    event_id="event_id",
    event_time="ts",
)


def _aggregations() -> list[Aggregation | Latest]:
    features: list[Aggregation | Latest] = []
    for name, function, field, window, hop in WINDOWS:
        features.append(
            Aggregation(
                f"{name}_h{hop}",
                function,
                windows=[window],
                field=field,
                hop=hop,
                n=3 if function == "last_n" else None,
            )
        )
    features += [Latest("kind_now", "kind"), Latest("amount_now", "amount")]
    return features


VIEW = FeatureView(
    "activity",
    entity=customer,
    source=events_source,
    features=_aggregations(),
    filter=(col("kind") != "skip") | col("kind").is_null(),
    ttl=TTL,
)
REF_WINDOWS = [
    RefWindow(f.name, f.function.value, f.field, f.window * S, f.hop * S, f.n)
    for f in VIEW.window_features
]


def _kept(values: dict[str, Any]) -> bool:
    kind = values.get("kind")
    return kind is None or kind != "skip"


# Amounts are multiples of 1/4: every sum is exact in binary floating point, so the
# runtimes must agree bit for bit.
amounts = st.one_of(st.none(), st.integers(-400, 400).map(lambda q: q / 4))
offsets = st.one_of(
    st.integers(0, 120).map(lambda s: s * S),  # whole seconds: hits tile and window bounds
    st.integers(0, 120 * S),  # anywhere
)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
)


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[int, list[dict[str, Any]]]]:
    """Batches (arrival offset, records), arrivals increasing; events late and out of order."""
    count = draw(st.integers(1, 40))
    records = []
    for i in range(count):
        event_time = draw(offsets)
        delay = draw(st.one_of(st.just(0), st.integers(0, 3 * S), st.integers(0, 90 * S)))
        event_id = f"e{draw(st.integers(0, count + 3))}" if draw(st.booleans()) else f"u{i}"
        values = {
            "event_id": event_id,
            "ts": from_micros(BASE + event_time).astimezone(draw(zones)),
            "customer_id": draw(st.sampled_from(KEYS)),
            "amount": draw(amounts),
            "qty": draw(st.one_of(st.none(), st.integers(-5, 50))),
            "item": draw(st.one_of(st.none(), st.sampled_from(["x", "y", "z", "w"]))),
            "kind": draw(st.sampled_from([None, "view", "buy", "skip"])),
        }
        records.append((event_time + delay, values))
    records.sort(key=lambda r: r[0])
    batches: list[tuple[int, list[dict[str, Any]]]] = []
    for arrival, values in records:
        if batches and (batches[-1][0] == arrival or draw(st.booleans())):
            # A batch arrives when its last record does (no event from the future).
            batches[-1] = (arrival, [*batches[-1][1], values])
        else:
            batches.append((arrival, [values]))
    return batches


def _reference_log(batches: list[tuple[int, list[dict[str, Any]]]]) -> list[RefEvent]:
    seen: set[str] = set()
    log: list[RefEvent] = []
    for arrival, records in batches:
        for record in records:
            if record["event_id"] in seen:
                continue
            seen.add(record["event_id"])
            log.append(
                RefEvent(
                    record["customer_id"],
                    to_micros(record["ts"]),
                    len(log) + 1,
                    BASE + arrival,
                    record,
                )
            )
    return log


def _reference(log: list[RefEvent], key: str, t: int, as_served: bool) -> dict[str, Any]:
    events = [e for e in visible(log, key, t, as_served) if _kept(e.values)]
    out = {w.name: window_value(w, events, t) for w in REF_WINDOWS}
    out["kind_now"] = latest_value("kind", events, t, TTL * S)
    out["amount_now"] = latest_value("amount", events, t, TTL * S)
    return out


def _clean(value: Any) -> Any:
    """pandas' missing markers as None, numpy scalars and arrays as Python values."""
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "tolist"):
        return _clean(value.tolist())
    if value is None or (isinstance(value, float) and value != value):
        return None
    if value is pd.NA:
        return None
    return value


@settings(
    max_examples=int(os.environ.get("CRMFS_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches=streams(), probe=st.lists(st.integers(0, 200 * S), min_size=1, max_size=4))
def test_streaming_equals_batch_equals_reference(
    batches: list[tuple[int, list[dict[str, Any]]]], probe: list[int]
) -> None:
    clock = [BASE]
    names = VIEW.feature_names
    refs = [f"activity:{n}" for n in names]
    with tempfile.TemporaryDirectory() as folder:
        store = FeatureStore(folder, definitions=[VIEW], clock=lambda: clock[0])
        store.apply()
        online_rows: list[tuple[str, int, dict[str, Any]]] = []
        for index, (arrival, records) in enumerate(batches):
            clock[0] = BASE + arrival
            store.ingest("events", records)
            # Read online right after the batch and later, before the next batch arrives.
            later = batches[index + 1][0] - 1 if index + 1 < len(batches) else arrival + 30 * S
            for t in sorted({clock[0], BASE + max(arrival, later)}):
                response = store.get_online_features(
                    refs, [{"customer_id": k} for k in KEYS], now=from_micros(t)
                )
                for i, key in enumerate(KEYS):
                    online_rows.append(
                        (key, t, {n: response.values[f"activity:{n}"][i] for n in names})
                    )
        log = _reference_log(batches)
        # Streaming (online at t) == reference as served at t.
        for key, t, values in online_rows:
            assert values == _reference(log, key, t, as_served=True), (key, t)
        # Batch as_served at the same (key, t) == the online values.
        entity_df = pd.DataFrame(
            {
                "customer_id": [k for k, _, _ in online_rows],
                "event_timestamp": [from_micros(t) for _, t, _ in online_rows],
            }
        )
        served = store.get_historical_features(entity_df, refs, as_served=True).to_df()
        for i, (key, t, values) in enumerate(online_rows):
            batch_values = {n: _clean(served[n].iloc[i]) for n in names}
            assert batch_values == values, (key, t)
        # Batch at arbitrary times (not as served) == reference.
        times = [BASE + p for p in probe]
        entity_df = pd.DataFrame(
            {
                "customer_id": [k for k in KEYS for _ in times],
                "event_timestamp": [from_micros(t) for _ in KEYS for t in times],
            }
        )
        # Every plan: the list plan whole and in slices of three rows; the sorted one with
        # windows over frames (share 10**9: no window is "short") and by joins (share 0:
        # every window is), the latter in slices of keys.
        for strategy, share, part in (
            ("range_join", 8, 10**6),
            ("lists", 8, 10**6),
            ("lists", 8, 3),
            ("sorted", 10**9, 10**6),
            ("sorted", 0, 3),
        ):
            store.engine.short_window_share = share
            store.engine.list_rows_per_part = part
            store.engine.sorted_rows_per_part = part
            offline = store.get_historical_features(entity_df, refs, strategy=strategy).to_df()
            for i, (key, t) in enumerate((k, t) for k in KEYS for t in times):
                expected = _reference(log, key, t, as_served=False)
                got = {n: _clean(offline[n].iloc[i]) for n in names}
                assert got == expected, (strategy, key, t)
        # A backfill from the log gives the same online values as streaming built.
        last = clock[0]
        before = store.get_online_features(
            refs, [{"customer_id": k} for k in KEYS], now=from_micros(last)
        )
        store.materialize()
        after = store.get_online_features(
            refs, [{"customer_id": k} for k in KEYS], now=from_micros(last)
        )
        assert after.values == before.values
        store.close()
