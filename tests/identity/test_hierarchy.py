"""Account -> contact roll-ups: a relation from CRM events, versioned, followed online."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from crmfs.definitions import Aggregation, Entity, EventSource, FeatureView, Relation
from crmfs.errors import DefinitionError
from crmfs.identity.graph_schema import UNBOUNDED_FUTURE, UNBOUNDED_PAST
from crmfs.identity.hierarchy import RelationEvent, current_parents, parent_spans
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros

T0 = datetime(2025, 6, 1, tzinfo=UTC)

person = Entity("person", join_key="golden_id", identity=True)
account = Entity("account", join_key="account_id")
contacts = EventSource(
    "contacts",
    schema={"event_id": "string", "ts": "timestamp", "email": "string", "account_id": "string"},
    event_id="event_id",
    event_time="ts",
    identifiers={"email": "email"},
)
opens = EventSource(
    "opens",
    schema={"event_id": "string", "ts": "timestamp", "email": "string"},
    event_id="event_id",
    event_time="ts",
    identifiers={"email": "email"},
)
works_at = Relation(
    "works_at", child=person, parent=account, source=contacts, parent_field="account_id"
)
ACCOUNT_OPENS = FeatureView(
    "account_opens",
    entity=account,
    source=opens,
    via=works_at,
    features=[Aggregation("opens", "count", windows=["7d"])],
)
REF = "account_opens:opens_7d"


def test_relation_and_rollup_definitions_are_checked() -> None:
    with pytest.raises(DefinitionError, match="child"):
        Relation("r", child=account, parent=account, source=contacts, parent_field="account_id")
    with pytest.raises(DefinitionError, match="parent_field"):
        Relation("r", child=person, parent=account, source=contacts, parent_field="nope")
    with pytest.raises(DefinitionError, match="parent entity"):
        FeatureView(
            "v",
            entity=person,
            source=opens,
            via=works_at,
            features=[Aggregation("n", "count", windows=["1d"])],
        )


def test_parents_follow_the_latest_event_of_the_records_of_each_person() -> None:
    records = {
        "r1": [(UNBOUNDED_PAST, 50, "g1"), (50, UNBOUNDED_FUTURE, "g2")],
        "r2": [(UNBOUNDED_PAST, UNBOUNDED_FUTURE, "g2")],
    }
    events = [
        RelationEvent("r1", 10, 10, 1, "A"),
        RelationEvent("r2", 20, 20, 2, "B"),
        RelationEvent("r1", 60, 30, 3, "C"),  # late: older than r2's event when it arrives
    ]
    spans = parent_spans(records, events)
    assert spans["g1"] == [(10, 50, "A")]
    # g2 has r2 from the start and r1 from 50; r1's late event (event time 30, after r2's 20)
    # is g2's latest once it is available, at 60.
    assert spans["g2"] == [(20, 60, "B"), (60, UNBOUNDED_FUTURE, "C")]
    assert current_parents(spans) == {"g2": "C"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[FeatureStore, list[int]]]:
    clock = [to_micros(T0)]
    fs = FeatureStore(tmp_path, definitions=[ACCOUNT_OPENS], clock=lambda: clock[0])
    fs.apply()
    yield fs, clock
    fs.close()


def _contact(n: int, minutes: int, email: str, account_id: str | None) -> dict[str, Any]:
    return {
        "event_id": f"c{n}",
        "ts": T0 + timedelta(minutes=minutes),
        "email": email,
        "account_id": account_id,
    }


def _open(n: int, minutes: int, email: str) -> dict[str, Any]:
    return {"event_id": f"o{n}", "ts": T0 + timedelta(minutes=minutes), "email": email}


def _opens(fs: FeatureStore, accounts: list[str], minutes: int) -> list[Any]:
    response = fs.get_online_features(
        [REF], [{"account_id": a} for a in accounts], now=T0 + timedelta(minutes=minutes)
    )
    return list(response.values[REF])


def test_opens_roll_up_to_the_account_and_follow_moves(
    store: tuple[FeatureStore, list[int]],
) -> None:
    fs, clock = store
    clock[0] = to_micros(T0 + timedelta(minutes=10))
    fs.ingest(
        "contacts",
        [
            _contact(1, 1, "ann@a.com", "acme"),
            _contact(2, 1, "bob@b.com", "acme"),
            _contact(3, 1, "cy@c.com", "initech"),
        ],
    )
    fs.ingest(
        "opens",
        [
            _open(1, 2, "ann@a.com"),
            _open(2, 3, "bob@b.com"),
            _open(3, 4, "cy@c.com"),
            _open(4, 5, "ann@a.com"),
            _open(5, 5, "nobody@x.com"),
        ],
    )
    assert _opens(fs, ["acme", "initech", "hooli"], 10) == [3, 1, 0]
    # Bob moves to initech: both accounts are recomputed, his earlier opens move with him.
    clock[0] = to_micros(T0 + timedelta(minutes=20))
    fs.ingest("contacts", [_contact(4, 15, "bob@b.com", "initech")])
    assert _opens(fs, ["acme", "initech"], 20) == [2, 2]
    # New opens fold under the account the person belongs to now.
    fs.ingest("opens", [_open(6, 18, "bob@b.com")])
    assert _opens(fs, ["acme", "initech"], 20) == [2, 3]
    # A person who had no account gets one: their earlier opens count from now on.
    fs.ingest("contacts", [_contact(5, 19, "nobody@x.com", "hooli")])
    assert _opens(fs, ["hooli"], 20) == [1]
    # Training sets: as of each row's time (the move took effect at its event time, 15)...
    rows = pd.DataFrame(
        {
            "account_id": ["acme", "initech", "acme", "initech"],
            "event_timestamp": [T0 + timedelta(minutes=m) for m in (12, 12, 30, 30)],
        }
    )
    as_of = fs.get_historical_features(rows, [REF]).to_df()
    assert as_of["opens_7d"].tolist() == [3, 1, 2, 3]
    # ... as served (learned at 20), and with today's mapping.
    served = fs.get_historical_features(rows, [REF], as_served=True).to_df()
    assert served["opens_7d"].tolist() == [3, 1, 2, 3]
    latest = fs.get_historical_features(rows, [REF], identity="latest").to_df()
    assert latest["opens_7d"].tolist() == [2, 2, 2, 3]
    # A rebuild gives what following left.
    before = _opens(fs, ["acme", "initech", "hooli"], 30)
    fs.materialize()
    assert _opens(fs, ["acme", "initech", "hooli"], 30) == before
    report = fs.check_parity()
    assert report.ok
    assert report.features[REF].checks == 3  # acme, initech, hooli


def test_identity_merges_move_roll_ups(store: tuple[FeatureStore, list[int]]) -> None:
    fs, clock = store
    clock[0] = to_micros(T0 + timedelta(minutes=10))
    fs.ingest("contacts", [_contact(1, 1, "ann@a.com", "acme")])
    fs.ingest("opens", [_open(1, 2, "ann.work@b.com"), _open(2, 3, "ann@a.com")])
    assert _opens(fs, ["acme"], 10) == [1]
    # An operator says the second address is Ann's too: its opens roll up to acme.
    fs.identity.merge("email=ann@a.com", "email=ann.work@b.com", "same person")
    assert _opens(fs, ["acme"], 10) == [2]
