"""Registry edges through the store, on both registries: versions by fingerprint, rebuilds on
apply, unapplied and removed views."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crmfs import Aggregation, col
from crmfs.errors import FeatureNotFound, RegistryConflict, RegistryError
from crmfs.registry.changes import ChangeKind
from crmfs.store import FeatureStore
from crmfs.timestamps import to_micros
from tests.registry.backends import Registries
from tests.registry.catalogs import view, windowed

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
EVENTS = [
    {"event_id": "a", "ts": "2026-06-01T09:00:00Z", "customer_id": "c1", "qty": 2},
    {"event_id": "b", "ts": "2026-06-01T10:00:00Z", "customer_id": "c1", "qty": 5},
    {"event_id": "c", "ts": "2026-06-01T11:00:00Z", "customer_id": "c1", "qty": 0},
]


def _store(folder: Path, registries: Registries, *definitions: object) -> FeatureStore:
    """A store on ``folder`` whose registry is the test's (SQLite file or PostgreSQL schema)."""
    store = FeatureStore(folder, definitions=definitions, clock=lambda: to_micros(NOW))
    store.registry.close()
    store.registry = registries.open()
    return store


def _read(store: FeatureStore, ref: str) -> Any:
    return store.get_online_features([ref], [{"customer_id": "c1"}], now=NOW).values[ref][0]


def _changes(store: FeatureStore) -> dict[str, tuple[ChangeKind, int, bool]]:
    return {c.name: (c.change, c.version, c.alters_values) for c in store.plan()}


def test_value_change_makes_a_new_version_rebuilt_from_the_log(
    tmp_path: Path, registries: Registries
) -> None:
    first = _store(tmp_path, registries, view())
    first.apply()
    first.ingest("orders", EVENTS)
    assert _read(first, "activity:qty_30d") == 7
    first.close()

    # A filter changes values: a new version whose online state is rebuilt from the log.
    second = _store(tmp_path, registries, view(filter=col("qty") > 2))
    assert _changes(second)["activity"] == (ChangeKind.VALUES, 2, True)
    applied = {c.name: c for c in second.apply()}
    assert applied["activity"].version == 2
    assert second.registry.version_of("FeatureView", "activity").version == 2  # type: ignore[union-attr]
    assert [v for v, _, _ in second.registry.history("FeatureView", "activity")] == [1, 2]
    assert _read(second, "activity:qty_30d") == 5  # only event b passes the filter
    assert _read(second, "activity:last_qty") == 5
    # The old version's online state is gone; the new one holds the customer.
    assert second.online.tables() == {"activity__v2": 1}
    # New events fold into the new version.
    second.ingest(
        "orders", [{"event_id": "d", "ts": "2026-06-01T11:30:00Z", "customer_id": "c1", "qty": 4}]
    )
    assert _read(second, "activity:qty_30d") == 9
    assert second.plan() == []


def test_metadata_change_keeps_the_version_and_the_online_state(
    tmp_path: Path, registries: Registries
) -> None:
    first = _store(tmp_path, registries, view())
    first.apply()
    first.ingest("orders", EVENTS)
    first.close()

    edited = view(description="edited", owner="growth", tags={"team": "growth"})
    second = _store(tmp_path, registries, edited)
    # Reads work before the metadata edit is applied: values did not change.
    assert _read(second, "activity:qty_30d") == 7
    assert _changes(second) == {"activity": (ChangeKind.METADATA, 1, False)}
    second.apply()
    assert second.registry.version_of("FeatureView", "activity").version == 1  # type: ignore[union-attr]
    assert [v for v, _, _ in second.registry.history("FeatureView", "activity")] == [1]
    assert second.online.tables() == {"activity__v1": 1}
    assert _read(second, "activity:qty_30d") == 7
    assert second.plan() == []


def test_plan_reports_every_kind_of_change(tmp_path: Path, registries: Registries) -> None:
    first = _store(
        tmp_path, registries, view("kept"), view("edited"), view("changed"), view("gone")
    )
    assert {c.change for c in first.plan()} == {ChangeKind.ADD}
    first.apply()
    first.close()

    second = _store(
        tmp_path,
        registries,
        view("kept"),
        view("edited", description="new words"),
        view("changed", features=[Aggregation("qty", "sum", ["7d"], field="qty")]),
        view("added"),
    )
    changes = _changes(second)
    assert "kept" not in changes
    assert changes["edited"] == (ChangeKind.METADATA, 1, False)
    assert changes["changed"] == (ChangeKind.VALUES, 2, True)
    assert changes["added"] == (ChangeKind.ADD, 1, True)
    assert changes["gone"] == (ChangeKind.REMOVE, 1, True)
    # plan is a dry run: nothing was recorded.
    assert second.registry.version_of("FeatureView", "changed").version == 1  # type: ignore[union-attr]
    assert second.registry.version_of("FeatureView", "added") is None


def test_unapplied_value_change_is_refused_naming_the_view(
    tmp_path: Path, registries: Registries
) -> None:
    first = _store(tmp_path, registries, view())
    first.apply()
    first.ingest("orders", EVENTS)
    first.close()

    second = _store(
        tmp_path, registries, view(features=[Aggregation("qty", "max", ["30d"], field="qty")])
    )
    with pytest.raises(RegistryError, match=r"'activity' \(values changed since v1\).*crmfs apply"):
        second.ingest("orders", EVENTS)
    with pytest.raises(RegistryError, match="'activity'"):
        _read(second, "activity:qty_30d")
    with pytest.raises(RegistryError, match="'activity'"):
        second.materialize()
    assert second.log.counts() == {"orders": 3}  # the refused ingest stored nothing
    second.apply()
    assert _read(second, "activity:qty_30d") == 5  # now the max, not the sum


def test_new_view_not_applied_is_refused(tmp_path: Path, registries: Registries) -> None:
    first = _store(tmp_path, registries, view())
    first.apply()
    first.close()
    second = _store(tmp_path, registries, view(), view("extra"))
    with pytest.raises(RegistryError, match=r"'extra' \(new, not applied\)"):
        second.ingest("orders", EVENTS)


def test_removed_view_is_dropped_and_can_come_back(tmp_path: Path, registries: Registries) -> None:
    first = _store(tmp_path, registries, view(), view("other"))
    first.apply()
    first.ingest("orders", EVENTS)
    assert set(first.online.tables()) == {"activity__v1", "other__v1"}
    first.close()

    second = _store(tmp_path, registries, view())
    assert _changes(second) == {"other": (ChangeKind.REMOVE, 1, True)}
    second.apply()
    assert second.registry.version_of("FeatureView", "other") is None
    assert set(second.online.tables()) == {"activity__v1"}
    with pytest.raises(FeatureNotFound, match="other:qty_30d"):
        _read(second, "other:qty_30d")
    assert _read(second, "activity:qty_30d") == 7
    second.close()

    # Re-added later, it gets a version after the last one and is rebuilt from the log.
    third = _store(tmp_path, registries, view(), view("other"))
    assert _changes(third) == {"other": (ChangeKind.ADD, 2, True)}
    third.apply()
    assert third.registry.version_of("FeatureView", "other").version == 2  # type: ignore[union-attr]
    assert _read(third, "other:qty_30d") == 7


def test_an_apply_overtaken_by_another_process_is_refused_whole(
    tmp_path: Path, registries: Registries
) -> None:
    """Another store applies between this apply's reading of the registry and its write:
    this one gets RegistryConflict, and the registry holds the other's versions only."""
    mine = _store(tmp_path / "mine", registries, windowed(7))
    theirs = _store(tmp_path / "theirs", registries, windowed(14))
    read_applied = mine.registry.applied

    def applied_then_overtaken() -> Any:
        found = read_applied()
        theirs.apply()  # lands while this apply is between its read and its write
        return found

    mine.registry.applied = applied_then_overtaken  # type: ignore[method-assign]
    with pytest.raises(RegistryConflict, match="crmfs plan"):
        mine.apply()
    assert [v for v, _, _ in theirs.registry.history("FeatureView", "activity")] == [1]
    mine.registry.applied = read_applied  # type: ignore[method-assign]
    assert {c.name: c.version for c in mine.apply()} == {"activity": 2}  # planned again
    for store in (mine, theirs):
        store.close()
