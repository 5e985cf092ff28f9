"""Features keyed by golden ids: ingestion resolves identity, online states follow merges
and splits, training sets resolve identity as of each row's time, and rows may name people
by any identifier."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from crmfs.definitions import Aggregation, Entity, EventSource, FeatureView, Latest
from crmfs.errors import ConfigError, DefinitionError
from crmfs.store import FeatureStore
from crmfs.timestamps import from_micros, to_micros

T0 = datetime(2025, 6, 1, tzinfo=UTC)
S = 1_000_000

person = Entity("person", join_key="golden_id", identity=True)
touches = EventSource(
    "touches",
    schema={
        "event_id": "string",
        "ts": "timestamp",
        "email": "string",
        "phone": "string",
        "amount": "float",
    },
    event_id="event_id",
    event_time="ts",
    identifiers={"email": "email", "phone": "phone"},
)
VIEW = FeatureView(
    "engagement",
    entity=person,
    source=touches,
    features=[
        Aggregation("touches", "count", windows=["1d"]),
        Aggregation("spend", "sum", field="amount", windows=["1d"]),
        Latest("last_amount", "amount"),
    ],
)
REFS = ["engagement:touches_1d", "engagement:spend_1d", "engagement:last_amount"]


def _event(n: int, minutes: int, email: str | None, phone: str | None, amount: float) -> dict:
    return {
        "event_id": f"e{n}",
        "ts": T0 + timedelta(minutes=minutes),
        "email": email,
        "phone": phone,
        "amount": amount,
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[FeatureStore, list[int]]]:
    clock = [to_micros(T0)]
    fs = FeatureStore(tmp_path, definitions=[VIEW], clock=lambda: clock[0])
    fs.apply()
    yield fs, clock
    fs.close()


def _at(clock: list[int], minutes: int) -> None:
    clock[0] = to_micros(T0 + timedelta(minutes=minutes))


def _online(fs: FeatureStore, rows: list[dict[str, Any]], minutes: int) -> list[list[Any]]:
    response = fs.get_online_features(REFS, rows, now=T0 + timedelta(minutes=minutes))
    return [[response.values[r][i] for r in REFS] for i in range(len(rows))]


def test_a_view_of_an_identity_entity_needs_strong_identifiers() -> None:
    anonymous = EventSource(
        "anonymous",
        schema={"event_id": "string", "ts": "timestamp", "first": "string"},
        event_id="event_id",
        event_time="ts",
        identifiers={"first": "first_name"},
    )
    with pytest.raises(DefinitionError, match="no strong identifier"):
        FeatureView(
            "v",
            entity=person,
            source=anonymous,
            features=[Aggregation("n", "count", windows=["1d"])],
        )
    with pytest.raises(DefinitionError, match="key_field"):
        FeatureView(
            "v",
            entity=person,
            source=touches,
            features=[Aggregation("n", "count", windows=["1d"])],
            key_field="email",
        )


def test_events_resolve_to_golden_ids_and_merges_combine_states(
    store: tuple[FeatureStore, list[int]],
) -> None:
    fs, clock = store
    _at(clock, 10)
    fs.ingest("touches", [_event(1, 1, "Ann@Example.com", None, 5.0)])
    fs.ingest("touches", [_event(2, 2, None, "+1 415 555 0100", 7.0)])
    ann = fs.identity.resolve("email", "ann@example.com")
    phone = fs.identity.resolve("phone", "(415) 555-0100")
    assert ann
    assert phone
    assert ann != phone
    assert _online(fs, [{"golden_id": ann}, {"golden_id": phone}], 10) == [
        [1, 5.0, 5.0],
        [1, 7.0, 7.0],
    ]
    # One event carries both: the two clusters merge, the older id survives.
    _at(clock, 20)
    fs.ingest("touches", [_event(3, 15, "ann@example.com", "4155550100", 1.0)])
    assert fs.identity.resolve("phone", "4155550100") == ann
    (merge,) = [e for e in fs.identity.show(ann).history if e.kind.value == "merged"]
    assert merge.reason.startswith("shared email, phone")  # the rule that linked it
    assert _online(fs, [{"golden_id": ann}, {"golden_id": phone}], 20) == [
        [3, 13.0, 1.0],
        [0, 0.0, None],
    ]
    # Any identifier names the person.
    assert _online(fs, [{"email": "ANN@example.com"}, {"phone": "4155550100"}], 20) == [
        [3, 13.0, 1.0],
        [3, 13.0, 1.0],
    ]
    # The log keeps each event's raw identifiers and the golden id it resolved to.
    logged = fs.log.read("touches")
    assert logged is not None
    rows = logged.sort_by("_seq").to_pylist()
    assert [r["email"] for r in rows] == ["Ann@Example.com", None, "ann@example.com"]
    assert [r["_golden_id"] for r in rows] == [ann, phone, ann]


def test_training_sets_resolve_identity_as_of_each_row(
    store: tuple[FeatureStore, list[int]],
) -> None:
    fs, clock = store
    _at(clock, 10)
    fs.ingest("touches", [_event(1, 1, "ann@example.com", None, 5.0)])
    fs.ingest("touches", [_event(2, 2, None, "4155550100", 7.0)])
    _at(clock, 20)
    fs.ingest("touches", [_event(3, 15, "ann@example.com", "4155550100", 1.0)])
    ann = fs.identity.resolve("email", "ann@example.com")
    entity_df = pd.DataFrame(
        {
            "golden_id": [ann] * 3,
            "event_timestamp": [T0 + timedelta(minutes=m) for m in (12, 16, 30)],
        }
    )
    # As of each row: before the merge took effect (event time 15) Ann has her own event.
    as_of = fs.get_historical_features(entity_df, REFS).to_df()
    assert as_of["touches_1d"].tolist() == [1, 3, 3]
    # As served: the merge was learned at minute 20.
    served = fs.get_historical_features(entity_df, REFS, as_served=True).to_df()
    assert served["touches_1d"].tolist() == [1, 1, 3]
    # With today's mapping, history is restated.
    latest = fs.get_historical_features(entity_df, REFS, identity="latest").to_df()
    assert latest["touches_1d"].tolist() == [2, 3, 3]
    # Rows may give an identifier instead of the golden id.
    by_phone = pd.DataFrame(
        {
            "phone": ["4155550100"] * 2,
            "event_timestamp": [T0 + timedelta(minutes=12), T0 + timedelta(minutes=30)],
        }
    )
    got = fs.get_historical_features(by_phone, REFS).to_df()
    assert got["golden_id"].tolist()[1] == ann
    assert got["touches_1d"].tolist() == [1, 3]
    with pytest.raises(ConfigError, match="golden"):
        fs.get_historical_features(pd.DataFrame({"event_timestamp": [T0]}), REFS)


def test_an_operator_split_recomputes_the_parts(store: tuple[FeatureStore, list[int]]) -> None:
    fs, clock = store
    _at(clock, 10)
    fs.ingest(
        "touches",
        [
            _event(1, 1, "ann@example.com", "4155550100", 5.0),
            _event(2, 2, "bob@example.com", "4155550100", 7.0),
        ],
    )
    ann = fs.identity.resolve("email", "ann@example.com")
    assert fs.identity.resolve("email", "bob@example.com") == ann
    assert _online(fs, [{"golden_id": ann}], 10) == [[2, 12.0, 7.0]]
    _at(clock, 30)
    ann_record = fs.identity.record_of("email", "ann@example.com")
    bob_record = fs.identity.record_of("email", "bob@example.com")
    assert ann_record
    assert bob_record
    changes = fs.identity.split(ann_record, bob_record, "a shared office phone")
    assert changes
    bob = fs.identity.resolve("email", "bob@example.com")
    assert bob != ann
    assert _online(fs, [{"golden_id": ann}, {"golden_id": bob}], 30) == [
        [1, 5.0, 5.0],
        [1, 7.0, 7.0],
    ]
    # As served before the split: one person; after: two.
    entity_df = pd.DataFrame(
        {
            "golden_id": [ann, ann, bob],
            "event_timestamp": [T0 + timedelta(minutes=m) for m in (20, 40, 40)],
        }
    )
    served = fs.get_historical_features(entity_df, REFS, as_served=True).to_df()
    assert served["touches_1d"].tolist() == [2, 1, 1]
    # A rebuild from the log gives the states the follower left.
    before = _online(fs, [{"golden_id": ann}, {"golden_id": bob}], 40)
    fs.materialize()
    assert _online(fs, [{"golden_id": ann}, {"golden_id": bob}], 40) == before
    # The parity check compares the live states with the batch runtime as served.
    report = fs.check_parity()
    assert report.ok
    assert report.features["engagement:touches_1d"].checks == 2


def test_events_without_a_usable_strong_identifier_are_quarantined(
    store: tuple[FeatureStore, list[int]],
) -> None:
    fs, clock = store
    _at(clock, 10)
    report = fs.ingest(
        "touches",
        [_event(1, 1, "not an email", None, 1.0), _event(2, 1, "ann@example.com", None, 2.0)],
    )
    assert (report.accepted, report.quarantined) == (1, 1)
    assert report.reasons == {"identifiers": 1}
    (kept,) = fs.quarantine("touches")
    assert "none of email, phone" in kept.reason
    assert from_micros(clock[0]) == T0 + timedelta(minutes=10)


def test_a_crash_before_a_merge_is_followed_is_repaired_on_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crmfs.ingestion.identity_follow import IdentityFollower

    clock = [to_micros(T0 + timedelta(minutes=10))]
    fs = FeatureStore(tmp_path, definitions=[VIEW], clock=lambda: clock[0])
    fs.apply()
    fs.ingest("touches", [_event(1, 1, "ann@example.com", None, 5.0)])
    fs.ingest("touches", [_event(2, 2, None, "4155550100", 7.0)])

    def crash(self: IdentityFollower) -> list[object]:
        if self.graph.changes_after(self.online.identity_mark()):
            raise RuntimeError("killed before the merge reached the online store")
        return []

    with monkeypatch.context() as patched:
        patched.setattr(IdentityFollower, "follow", crash)
        with pytest.raises(RuntimeError, match="killed"):
            fs.ingest("touches", [_event(3, 3, "ann@example.com", "4155550100", 1.0)])
    fs.close()
    # The graph and the log committed the batch; the online store had not merged. A new
    # process follows the merge once, however often it catches up.
    again = FeatureStore(tmp_path, definitions=[VIEW], clock=lambda: clock[0])
    again.catch_up()
    again.catch_up()
    ann = again.identity.resolve("email", "ann@example.com")
    assert _online(again, [{"golden_id": ann}], 10) == [[3, 13.0, 1.0]]
    again.close()
