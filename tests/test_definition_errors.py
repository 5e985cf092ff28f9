"""Invalid definitions fail when loaded, naming the definition and the field."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from crmfs import (
    Aggregation,
    DefinitionError,
    Entity,
    EventSource,
    FeatureService,
    FeatureView,
    Latest,
    col,
)
from crmfs.definitions import Catalog, IdentifierKind, fingerprint

customer = Entity("customer", join_key="customer_id")
SCHEMA = {
    "event_id": "string",
    "ts": "timestamp",
    "customer_id": "string",
    "amount": "float",
    "item": "string",
}
source = EventSource("clicks", schema=SCHEMA, event_id="event_id", event_time="ts")


def view(*features: Aggregation | Latest, **options: object) -> FeatureView:
    return FeatureView("activity", customer, source, list(features), **options)  # type: ignore[arg-type]


CASES: list[tuple[str, Callable[[], object], str, str]] = [
    ("sum over text", lambda: view(Aggregation("s", "sum", ["1h"], field="item")), "'s'", "field"),
    (
        "unknown function",
        lambda: view(Aggregation("s", "median", ["1h"], field="amount")),
        "'s'",
        "function",
    ),
    (
        "last_n without n",
        lambda: view(Aggregation("r", "last_n", ["1h"], field="item")),
        "'r'",
        "n",
    ),
    ("n on count", lambda: view(Aggregation("c", "count", ["1h"], n=3)), "'c'", "n"),
    ("bad window", lambda: view(Aggregation("c", "count", ["7x"])), "'c'", "windows"),
    ("hop above window", lambda: view(Aggregation("c", "count", ["1h"], hop="2h")), "'c'", "hop"),
    ("unknown field", lambda: view(Latest("l", field="nope")), "'l'", "field"),
    (
        "duplicate names",
        lambda: view(Latest("x", "item"), Latest("x", "amount")),
        "'activity'",
        "features",
    ),
    (
        "filter column",
        lambda: view(Latest("l", "item"), filter=col("nope") == 1),
        "'activity'",
        "filter",
    ),
    (
        "filter literal",
        lambda: view(Latest("l", "item"), filter=col("item") == 3),
        "'activity'",
        "filter",
    ),
    ("bad ttl", lambda: view(Latest("l", "item"), ttl="soon"), "'activity'", "ttl"),
    ("event time type", lambda: EventSource("s", SCHEMA, "event_id", "item"), "'s'", "event_time"),
    (
        "bad timezone",
        lambda: EventSource("s", SCHEMA, "event_id", "ts", timezone="Mars/Base"),
        "'s'",
        "timezone",
    ),
    (
        "bad type",
        lambda: EventSource("s", {**SCHEMA, "x": "money"}, "event_id", "ts"),
        "'s'",
        "schema.x",
    ),
    (
        "identifier field",
        lambda: EventSource("s", SCHEMA, "event_id", "ts", identifiers={"mail": "email"}),
        "'s'",
        "identifiers.mail",
    ),
    (
        "identifier kind",
        lambda: EventSource("s", SCHEMA, "event_id", "ts", identifiers={"item": "passport"}),
        "'s'",
        "identifiers.item",
    ),
    (
        "identifier type",
        lambda: EventSource("s", SCHEMA, "event_id", "ts", identifiers={"amount": "email"}),
        "'s'",
        "identifiers.amount",
    ),
    ("sensitivity", lambda: Entity("e", "id", sensitivity="secret"), "'e'", "sensitivity"),
    ("service ref", lambda: FeatureService("svc", features=["no-colon"]), "'svc'", "features"),
    (
        "service target",
        lambda: Catalog.of(
            [FeatureService("svc", features=["activity:missing"]), view(Latest("l", "item"))]
        ),
        "'svc'",
        "features",
    ),
]


@pytest.mark.parametrize(
    ("label", "build", "definition", "field"), CASES, ids=[c[0] for c in CASES]
)
def test_invalid_definition_names_definition_and_field(
    label: str, build: Callable[[], object], definition: str, field: str
) -> None:
    with pytest.raises(DefinitionError) as info:
        build()
    assert definition in info.value.definition
    assert info.value.field == field
    assert field in str(info.value)


def test_metadata_edits_keep_the_value_fingerprint_and_value_edits_change_it() -> None:
    base = view(Aggregation("c", "count", ["7d"]), Latest("l", "item"), ttl="30d")
    described = view(
        Aggregation("c", "count", ["7d"], description="clicks"),
        Latest("l", "item"),
        ttl="30d",
        owner="me",
        freshness_sla="1h",
        tags={"team": "recsys"},
    )
    assert fingerprint(base.value_spec()) == fingerprint(described.value_spec())
    assert fingerprint(base.metadata_spec()) != fingerprint(described.metadata_spec())
    for changed in (
        view(Aggregation("c", "count", ["30d"]), Latest("l", "item"), ttl="30d"),
        view(Aggregation("c", "count", ["7d"], hop="1d"), Latest("l", "item"), ttl="30d"),
        view(Aggregation("c", "count", ["7d"]), Latest("l", "item"), ttl="60d"),
        view(
            Aggregation("c", "count", ["7d"]),
            Latest("l", "item"),
            ttl="30d",
            filter=col("item") == "a",
        ),
    ):
        assert fingerprint(changed.value_spec()) != fingerprint(base.value_spec())


def test_identifiers_change_a_sources_fingerprint_only_when_declared() -> None:
    """Sources declared before identifiers existed keep their fingerprints; declaring or
    changing identifiers is a value change (it changes who events are about)."""
    plain = EventSource("clicks", SCHEMA, "event_id", "ts")
    assert "identifiers" not in plain.value_spec()
    assert fingerprint(plain.value_spec()) == fingerprint(source.value_spec())
    email = EventSource("clicks", SCHEMA, "event_id", "ts", identifiers={"customer_id": "email"})
    crm = EventSource(
        "clicks", SCHEMA, "event_id", "ts", identifiers={"customer_id": "crm_contact_id"}
    )
    assert email.identifiers == {"customer_id": IdentifierKind.EMAIL}
    assert IdentifierKind.EMAIL.is_strong
    assert not IdentifierKind.FIRST_NAME.is_strong
    fingerprints = {fingerprint(s.value_spec()) for s in (plain, email, crm)}
    assert len(fingerprints) == 3


def test_feature_names_carry_their_window() -> None:
    v = view(Aggregation("spend", "sum", ["1h", "7d"], field="amount"), Latest("last_item", "item"))
    assert v.feature_names == ["spend_1h", "spend_7d", "last_item"]
