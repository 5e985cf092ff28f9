"""A project whose crmfs.yaml keeps the identity graph in PostgreSQL: two stores of the
project (two processes' worth) ingest in turns, and each sees the other's merges."""

from __future__ import annotations

from pathlib import Path

from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros
from tests.identity.graph_places import Schemas
from tests.identity.test_identity_features import T0, _event

DEFINITIONS = """\
from crmfs.definitions import Aggregation, Entity, EventSource, FeatureView

person = Entity("person", join_key="golden_id", identity=True)
touches = EventSource(
    "touches",
    schema={"event_id": "string", "ts": "timestamp", "email": "string", "phone": "string",
            "amount": "float"},
    event_id="event_id", event_time="ts", identifiers={"email": "email", "phone": "phone"},
)
engagement = FeatureView("engagement", entity=person, source=touches,
                         features=[Aggregation("touches", "count", windows=["1d"])])
"""


def test_two_stores_of_a_project_share_its_identity_graph_in_postgres(
    tmp_path: Path, pg_dsn: str, pg_schemas: Schemas
) -> None:
    schema = pg_schemas.new()
    (tmp_path / "crmfs.yaml").write_text(
        f"project: shop\nidentity: {{type: postgres, dsn: '{pg_dsn}', schema: '{schema}'}}\n"
    )
    (tmp_path / "definitions.py").write_text(DEFINITIONS)
    now = to_micros(T0) + 3_600_000_000
    first, second = (FeatureStore(tmp_path, clock=lambda: now) for _ in range(2))
    first.apply()
    first.ingest("touches", [_event(1, 1, "ann@example.com", None, 1.0)])
    second.ingest("touches", [_event(2, 2, None, "+14155550100", 2.0)])
    ann = first.identity.resolve("email", "ann@example.com")
    phone = second.identity.resolve("phone", "+14155550100")
    assert ann
    assert phone
    assert ann != phone
    # The first store links both; the second reads the merge once it catches up.
    first.ingest("touches", [_event(3, 3, "ann@example.com", "+14155550100", 3.0)])
    assert second.identity_graph.refresh()
    assert second.identity.resolve("phone", "+14155550100") == ann
    assert second.identity_graph.clusters() == first.identity_graph.clusters()
    for store in (first, second):
        store.close()
