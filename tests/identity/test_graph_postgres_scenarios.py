"""The identity graph's scenarios (``test_graph.py``, ``test_graph_probabilistic.py``) run
again with every graph they open kept in PostgreSQL: the same steps, the same assertions.

Each scenario names its graphs by SQLite paths; here each path stands for a schema of its
own (reopening a path reopens its schema), dropped after the test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crmfs.identity.deterministic import IdentityRecord
from crmfs.identity.graph import IdentityGraph
from crmfs.identity.graph_postgres import PostgresGraphStore
from crmfs.synthetic import generate_crm, identity_records
from tests.identity import test_graph, test_graph_probabilistic
from tests.identity.graph_places import Schemas

Crm = tuple[list[IdentityRecord], dict[str, str]]


@pytest.fixture
def on_postgres(pg_dsn: str, pg_schemas: Schemas, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scenarios' ``IdentityGraph(path, ...)`` opens a graph in PostgreSQL instead."""

    def in_postgres(
        path: Path,
        clock: Callable[[], int],
        max_records_per_key: int | None = None,
        names_must_agree: bool = True,
    ) -> IdentityGraph:
        store = PostgresGraphStore(pg_dsn, pg_schemas.for_path(Path(path)), backoff_s=0.01)
        return IdentityGraph(store, clock, max_records_per_key, names_must_agree)

    for module in (test_graph, test_graph_probabilistic):
        monkeypatch.setattr(module, "IdentityGraph", in_postgres)


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Crm:
    """The synthetic CRM of ``test_graph_probabilistic`` (seed 3, scale 400)."""
    folder = tmp_path_factory.mktemp("crm")
    generated = generate_crm(folder, scale=400, seed=3, progress=None)
    return identity_records(generated.files["ground_truth"].parent)


GRAPH_SCENARIOS: list[Callable[[Path], None]] = [
    test_graph.test_golden_ids_survive_a_restart,
    test_graph.test_golden_ids_as_of_a_time_and_the_audit_trail,
    test_graph.test_a_key_that_becomes_shared_stops_resolving_from_then_on,
    test_graph.test_operator_decisions_are_kept_and_audited,
]
PROBABILISTIC_SCENARIOS: list[Callable[[Path, Crm], None]] = [
    test_graph_probabilistic.test_fitting_links_what_the_strong_keys_miss_and_survives_a_restart,
    test_graph_probabilistic.test_streaming_after_fitting_gives_the_first_loads_clusters,
    test_graph_probabilistic.test_a_probabilistic_link_is_explained_and_can_be_undone,
    test_graph_probabilistic.test_pairs_below_the_threshold_wait_for_review,
]


def _name(scenario: Any) -> str:
    return str(scenario.__name__).removeprefix("test_")


@pytest.mark.usefixtures("on_postgres")
@pytest.mark.parametrize("scenario", GRAPH_SCENARIOS, ids=_name)
def test_graph_scenario_on_postgres(scenario: Callable[[Path], None], tmp_path: Path) -> None:
    scenario(tmp_path)


@pytest.mark.usefixtures("on_postgres")
def test_a_failed_write_leaves_disk_and_memory_as_they_were_on_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test_graph.test_a_failed_write_leaves_disk_and_memory_as_they_were(tmp_path, monkeypatch)


@pytest.mark.usefixtures("on_postgres")
def test_restarts_anywhere_change_nothing_on_postgres(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    test_graph.test_restarts_anywhere_change_nothing(tmp_path_factory=tmp_path_factory)


@pytest.mark.usefixtures("on_postgres")
@pytest.mark.parametrize("scenario", PROBABILISTIC_SCENARIOS, ids=_name)
def test_probabilistic_scenario_on_postgres(
    scenario: Callable[[Path, Crm], None], tmp_path: Path, crm: Crm
) -> None:
    scenario(tmp_path, crm)
