"""Parity for roll-ups across relation and identity changes.

People (emails, phones from small pools) belong to accounts by membership events; their
touches roll up to the account. Memberships move, identities merge and split (keys and
operators). Online values (followed by recomputation) must equal the batch runtime's
``as_served`` values and a brute-force reference: an account's features at ``t`` count the
touches of every record whose golden id at ``t`` has the account as its latest available
membership at ``t``.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmfs.definitions import Aggregation, Entity, EventSource, FeatureView, Latest, Relation
from crmfs.store import FeatureStore
from crmfs.timestamps import from_micros
from tests.properties.reference import RefEvent, RefWindow, latest_value, window_value
from tests.properties.test_identity_parity import (
    BASE,
    EMAILS,
    PHONES,
    S,
    _clean,
    _decide,
    _golden_at,
    _logged,
    _timeline,
    person,
    touches,
)

TTL = 40
ACCOUNTS = ["acme", "initech", None]
account = Entity("account", join_key="account_id")
memberships = EventSource(
    "memberships",
    schema={
        "event_id": "string",
        "ts": "timestamp",
        "email": "string",
        "phone": "string",
        "account_id": "string",
    },
    event_id="event_id",
    event_time="ts",
    identifiers={"email": "email", "phone": "phone"},
)
works_at = Relation(
    "works_at", child=person, parent=account, source=memberships, parent_field="account_id"
)
VIEW = FeatureView(
    "account_touches",
    entity=account,
    source=touches,
    via=works_at,
    features=[
        Aggregation("n", "count", windows=[10, 60], hop=5),
        Aggregation("spend", "sum", field="amount", windows=[30], hop=10),
        Latest("amount_now", "amount"),
    ],
    ttl=TTL,
)
NAMES = VIEW.feature_names
REFS = [f"account_touches:{n}" for n in NAMES]
REF_WINDOWS = [
    RefWindow(f.name, f.function.value, f.field, f.window * S, f.hop * S, f.n)
    for f in VIEW.window_features
]

Step = tuple[int, str, list[dict[str, Any]], list[tuple[str, int, int]]]


@st.composite
def histories(draw: st.DrawFn) -> list[Step]:
    """Batches of touches or memberships (arrival, source, records, operator decisions)."""
    count = draw(st.integers(1, 30))
    items = []
    for i in range(count):
        source = draw(st.sampled_from(["touches", "memberships"]))
        event_time = draw(st.integers(0, 120)) * S
        delay = draw(st.one_of(st.just(0), st.integers(0, 90))) * S
        email = draw(st.sampled_from(EMAILS))
        phone = draw(st.sampled_from(PHONES[1:] if email is None else PHONES))
        values: dict[str, Any] = {
            "event_id": f"e{draw(st.integers(0, count + 2))}" if draw(st.booleans()) else f"u{i}",
            "ts": from_micros(BASE + event_time),
            "email": email,
            "phone": phone,
        }
        if source == "touches":
            values["amount"] = draw(st.one_of(st.none(), st.integers(-40, 40).map(lambda q: q / 4)))
            values["item"] = None
        else:
            values["account_id"] = draw(st.sampled_from(ACCOUNTS))
        items.append((event_time + delay, source, values))
    items.sort(key=lambda r: r[0])
    steps: list[Step] = []
    for arrival, source, values in items:
        if steps and steps[-1][1] == source and (steps[-1][0] >= arrival or draw(st.booleans())):
            steps[-1][2].append(values)
            continue
        if steps and steps[-1][0] >= arrival:
            arrival = steps[-1][0] + 1  # another source's batch: a moment later
        decisions = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["merge", "split"]), st.integers(0, 99), st.integers(0, 99)
                ),
                max_size=1,
            )
        )
        steps.append((arrival, source, [values], decisions))
    return steps


Logged = list[tuple[RefEvent, str]]


def _account_of(
    golden: str, t: int, members: Logged, timeline: dict[str, Any], as_served: bool
) -> Any:
    """The account of ``golden`` at ``t``: its records' latest available membership."""
    best = None
    for event, record in members:
        if _golden_at(timeline, record, t) != golden:
            continue
        available = max(event.event_time, event.ingested_at) if as_served else event.event_time
        if available > t:
            continue
        if best is None or (event.event_time, event.seq) > (best.event_time, best.seq):
            best = event
    return None if best is None else best.values["account_id"]


def _reference(
    touched: Logged,
    members: Logged,
    timeline: dict[str, Any],
    account_id: str,
    t: int,
    as_served: bool,
) -> dict[str, Any]:
    events = []
    for event, record in touched:
        if event.event_time > t or (as_served and event.ingested_at > t):
            continue
        golden = _golden_at(timeline, record, t)
        if (
            golden is not None
            and _account_of(golden, t, members, timeline, as_served) == account_id
        ):
            events.append(event)
    out: dict[str, Any] = {w.name: window_value(w, events, t) for w in REF_WINDOWS}
    out["amount_now"] = latest_value("amount", events, t, TTL * S)
    return out


@settings(
    max_examples=int(os.environ.get("CRMFS_PROPERTY_EXAMPLES", "40")) // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps=histories(), probe=st.lists(st.integers(0, 200), min_size=1, max_size=3))
def test_roll_ups_keep_streaming_batch_and_reference_equal(
    steps: list[Step], probe: list[int]
) -> None:
    clock = [BASE]
    accounts = ["acme", "initech"]
    with tempfile.TemporaryDirectory() as folder:
        store = FeatureStore(folder, definitions=[VIEW], clock=lambda: clock[0])
        store.apply()
        online_rows: list[tuple[str, int, dict[str, Any]]] = []
        for index, (arrival, source, records, decisions) in enumerate(steps):
            clock[0] = BASE + arrival
            store.ingest(source, records)
            _decide(store, decisions)
            later = steps[index + 1][0] - 1 if index + 1 < len(steps) else arrival + 30 * S
            for t in sorted({clock[0], BASE + max(arrival, later)}):
                response = store.get_online_features(
                    REFS, [{"account_id": a} for a in accounts], now=from_micros(t)
                )
                for i, key in enumerate(accounts):
                    online_rows.append(
                        (key, t, {n: response.values[f"account_touches:{n}"][i] for n in NAMES})
                    )
        touched, members = _logged(store, "touches"), _logged(store, "memberships")
        recorded = _timeline(store.identity_graph.intervals("recorded"))
        for key, t, values in online_rows:
            expected = _reference(touched, members, recorded, key, t, as_served=True)
            assert values == expected, (key, t)
        entity_df = pd.DataFrame(
            {
                "account_id": [k for k, _, _ in online_rows],
                "event_timestamp": [from_micros(t) for _, t, _ in online_rows],
            }
        )
        served = store.get_historical_features(entity_df, REFS, as_served=True).to_df()
        for i, (key, t, values) in enumerate(online_rows):
            assert {n: _clean(served[n].iloc[i]) for n in NAMES} == values, (key, t)
        times = [BASE + p * S for p in probe]
        entity_df = pd.DataFrame(
            {
                "account_id": [a for a in accounts for _ in times],
                "event_timestamp": [from_micros(t) for _ in accounts for t in times],
            }
        )
        effective = _timeline(store.identity_graph.intervals("effective"))
        for strategy in ("range_join", "lists", "sorted"):
            offline = store.get_historical_features(entity_df, REFS, strategy=strategy).to_df()
            for i, (key, t) in enumerate((a, t) for a in accounts for t in times):
                expected = _reference(touched, members, effective, key, t, as_served=False)
                got = {n: _clean(offline[n].iloc[i]) for n in NAMES}
                assert got == expected, (strategy, key, t)
        rows = [{"account_id": a} for a in accounts]
        before = store.get_online_features(REFS, rows, now=from_micros(clock[0]))
        store.materialize()
        after = store.get_online_features(REFS, rows, now=from_micros(clock[0]))
        assert after.values == before.values
        store.close()
