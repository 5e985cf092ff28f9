"""The freshness contract of online reads: fallback chains, a request's maximum age, and
consent-gated feature services (``serving.contract``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from crmfs import DefinitionError, FeatureService, FeatureView, Latest
from crmfs.definitions import Aggregation, Catalog, Fallback
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros
from tests.orders_project import NOW, consent_view, customer, orders_source


def buying(**options: object) -> FeatureView:
    return FeatureView(
        "buying",
        customer,
        orders_source(),
        [
            Aggregation("avg_price", "mean", ["1h", "30d"], field="price"),
            Aggregation("qty", "sum", ["30d"], field="qty"),
            Latest("last_price", "price"),
        ],
        **options,  # type: ignore[arg-type]
    )


FALLBACKS = {
    "avg_price_1h": [Fallback.feature("avg_price_30d"), Fallback.default(0.0)],
    "last_price": [Fallback.offline(), Fallback.default(-1.0)],
}


def order(event_id: str, customer_id: str, price: float, hours_ago: float) -> dict[str, object]:
    return {
        "event_id": event_id,
        "ts": NOW - timedelta(hours=hours_ago),
        "customer_id": customer_id,
        "qty": 1,
        "price": price,
    }


def make_store(folder: Path, *definitions: object) -> FeatureStore:
    store = FeatureStore(folder, definitions=definitions, clock=lambda: to_micros(NOW))
    store.apply()
    return store


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    store = make_store(tmp_path, buying(fallback=FALLBACKS, freshness_sla="1h"))
    store.ingest("orders", [order("e1", "c1", 10.0, 2), order("e2", "c1", 20.0, 3)])
    return store


def column(response: object, ref: str) -> list[tuple[object, str, object]]:
    r = response
    fallbacks = r.fallbacks.get(ref, [None] * len(r.entity_rows))  # type: ignore[attr-defined]
    return list(zip(r.values[ref], r.statuses[ref], fallbacks, strict=True))  # type: ignore[attr-defined]


def test_a_missing_window_falls_back_to_a_coarser_one_then_to_the_default(
    store: FeatureStore,
) -> None:
    got = store.get_online_features(
        ["buying:avg_price_1h"], [{"customer_id": "c1"}, {"customer_id": "nobody"}]
    )
    assert column(got, "buying:avg_price_1h") == [
        (15.0, "fallback", "buying:avg_price_30d"),
        (0.0, "fallback", "default"),
    ]
    # The coarser feature was read only to serve the chain: it is not in the answer.
    assert got.features == ["buying:avg_price_1h"]
    assert got.ages["buying:avg_price_1h"][1] is None


def test_values_of_their_own_carry_no_fallback(store: FeatureStore) -> None:
    got = store.get_online_features(["buying:avg_price_30d"], [{"customer_id": "c1"}])
    assert column(got, "buying:avg_price_30d") == [(15.0, "fresh", None)]
    assert "fallback" not in got.rows()[0]["buying:avg_price_30d"]


def test_the_offline_step_serves_values_missing_online(store: FeatureStore) -> None:
    plan = store.plans()["buying"]
    store.online.drop_table(plan.table)  # the online store lost the view's states
    got = store.get_online_features(
        ["buying:last_price", "buying:qty_30d"], [{"customer_id": "c1"}, {"customer_id": "x"}]
    )
    assert column(got, "buying:last_price") == [
        (10.0, "fallback", "offline"),  # computed from the event log now
        (-1.0, "fallback", "default"),  # the log knows nothing either: the next step
    ]
    assert column(got, "buying:qty_30d") == [(0, "missing", None), (0, "missing", None)]
    # Keys typed as the online read types them (an int for a string key, say).
    typed = store.get_online_features(
        ["buying:last_price"], [{"customer_id": "c1"}, {"customer_id": 7}]
    )
    assert column(typed, "buying:last_price") == [
        (10.0, "fallback", "offline"),
        (-1.0, "fallback", "default"),
    ]
    skipped = store.get_online_features(
        ["buying:last_price"], [{"customer_id": "c1"}], offline_fallback=False
    )
    assert column(skipped, "buying:last_price") == [(-1.0, "fallback", "default")]


def test_stale_values_fall_back_and_without_a_chain_are_served_as_stale(
    store: FeatureStore,
) -> None:
    later = NOW + timedelta(hours=2)  # the store has not heard from the log for 2 h > SLA
    got = store.get_online_features(
        ["buying:avg_price_1h", "buying:qty_30d"], [{"customer_id": "c1"}], now=later
    )
    # The coarser feature is stale too, so the default serves.
    assert column(got, "buying:avg_price_1h") == [(0.0, "fallback", "default")]
    assert column(got, "buying:qty_30d") == [(2, "stale", None)]


def test_a_request_sets_its_own_maximum_age(tmp_path: Path) -> None:
    store = make_store(tmp_path, buying())  # no SLA, no fallbacks
    store.ingest("orders", [order("e1", "c1", 10.0, 2)])
    rows = [{"customer_id": "c1"}]
    relaxed = store.get_online_features(["buying:last_price", "buying:qty_30d"], rows)
    assert relaxed.statuses["buying:last_price"] == ["fresh"]
    assert relaxed.ages["buying:last_price"] == [7200.0]
    strict = store.get_online_features(
        ["buying:last_price", "buying:qty_30d"], rows, max_age_s=3600
    )
    assert strict.statuses["buying:last_price"] == ["stale"]  # the event is 2 h old
    assert strict.values["buying:last_price"] == [10.0]  # served, and said to be stale
    assert strict.statuses["buying:qty_30d"] == ["fresh"]  # the window was applied now


def consent_event(event_id: str, customer_id: str, given: bool) -> dict[str, object]:
    return {"event_id": event_id, "ts": NOW, "customer_id": customer_id, "personalization": given}


def test_a_service_gated_by_consent_withholds_personal_values(tmp_path: Path) -> None:
    view = buying()
    service = FeatureService(
        "recs", [view], purpose="personalization", consent="consent:personalization"
    )
    store = make_store(tmp_path, view, consent_view, service)
    store.ingest("orders", [order(f"e{c}", c, 5.0, 1) for c in ("c1", "c2", "c3")])
    store.ingest("consents", [consent_event("k1", "c1", True), consent_event("k2", "c2", False)])
    rows = [{"customer_id": c} for c in ("c1", "c2", "c3")]
    got = store.get_online_features("recs", rows)
    for ref in service.feature_refs():
        assert got.statuses[ref][1:] == ["consent_withheld", "consent_withheld"]
        assert got.values[ref][1:] == [None, None]
        assert got.statuses[ref][0] != "consent_withheld"
    assert "consent:personalization" not in got.features  # read for the gate only
    # A revocation is ingested like any signal, and the next read honours it.
    store.ingest("consents", [consent_event("k3", "c1", False)])
    again = store.get_online_features("recs", rows[:1])
    assert again.statuses["buying:qty_30d"] == ["consent_withheld"]
    # The same features asked for without the service are not gated by its purpose.
    plain = store.get_online_features(["buying:qty_30d"], rows[:1])
    assert plain.values["buying:qty_30d"] == [1]


def test_unknown_consent_can_be_allowed(tmp_path: Path) -> None:
    view = buying()
    service = FeatureService(
        "recs",
        [view],
        purpose="personalization",
        consent="consent:personalization",
        consent_when_unknown="allow",
    )
    store = make_store(tmp_path, view, consent_view, service)
    store.ingest("orders", [order("e1", "c1", 5.0, 1)])
    got = store.get_online_features("recs", [{"customer_id": "c1"}])
    assert got.values["buying:qty_30d"] == [1]
    assert got.statuses["buying:qty_30d"] == ["fresh"]


@pytest.mark.parametrize(
    ("fallback", "message"),
    [
        ({"nope": [Fallback.default(1)]}, "'nope' is not a feature"),
        ({"qty_30d": [Fallback.feature("qty_30d")]}, "cannot fall back to itself"),
        ({"qty_30d": [Fallback.feature("missing")]}, "not a feature of this view"),
        ({"qty_30d": [Fallback.feature("avg_price_30d")]}, "(int) falls back to"),
        ({"qty_30d": [Fallback.default("many")]}, "cannot default to 'many'"),
        ({"qty_30d": [Fallback.default(True)]}, "cannot default to True"),
        ({"qty_30d": []}, "non-empty list"),
        ({"qty_30d": ["zero"]}, "is not a Fallback"),
        ("offline", "give a list of Fallback"),
    ],
)
def test_bad_fallback_chains_are_refused_naming_the_field(fallback: object, message: str) -> None:
    with pytest.raises(DefinitionError, match="fallback") as caught:
        buying(fallback=fallback)
    assert message in str(caught.value)


def test_bad_consent_declarations_are_refused() -> None:
    view = buying()
    with pytest.raises(DefinitionError, match="purpose"):
        FeatureService("recs", [view], consent="consent:personalization")
    with pytest.raises(DefinitionError, match="consent"):
        FeatureService("recs", [view], purpose="personalization")
    with pytest.raises(DefinitionError, match="consent_when_unknown"):
        FeatureService(
            "recs", [view], purpose="p", consent="consent:personalization", consent_when_unknown="x"
        )
    not_bool = FeatureService("recs", [view], purpose="p", consent="buying:qty_30d")
    with pytest.raises(DefinitionError, match="not a bool feature"):
        Catalog.of([view, not_bool])
