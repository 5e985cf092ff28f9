"""The registry contract, the same for SQLite and PostgreSQL: versions, generations, conflicts."""

from __future__ import annotations

import time

import pytest

from crmfs.errors import RegistryConflict, RegistryError
from crmfs.registry.changes import ChangeKind
from tests.registry.backends import Registries
from tests.registry.catalogs import catalog, view, windowed

ACTIVITY = ("FeatureView", "activity")


def test_a_fresh_registry_is_empty_at_generation_zero(registries: Registries) -> None:
    registry = registries.open()
    assert registry.generation() == 0
    assert registry.applied() == {}
    assert registry.last_versions() == {}
    planned = registry.plan(catalog(view()))
    assert {(c.kind, c.name, c.change, c.version) for c in planned} == {
        ("Entity", "customer", ChangeKind.ADD, 1),
        ("EventSource", "orders", ChangeKind.ADD, 1),
        ("FeatureView", "activity", ChangeKind.ADD, 1),
    }
    assert registry.generation() == 0  # plan is a dry run


def test_each_apply_that_changes_something_is_one_generation(registries: Registries) -> None:
    registry = registries.open()
    assert len(registry.apply(catalog(view()), now=100)) == 3
    assert registry.generation() == 1
    assert registry.plan(catalog(view())) == []
    # Applying the same definitions again changes nothing and keeps the generation.
    assert registry.apply(catalog(view()), now=200) == []
    assert registry.generation() == 1

    edited = registry.apply(catalog(view(description="edited")), now=300)
    assert [(c.name, c.change, c.version) for c in edited] == [("activity", ChangeKind.METADATA, 1)]
    assert registry.generation() == 2
    assert registry.history(*ACTIVITY) == [(1, registry.applied()[ACTIVITY].value_fp, 100)]

    changed = registry.apply(catalog(windowed(7)), now=400)
    assert [(c.name, c.change, c.version) for c in changed] == [("activity", ChangeKind.VALUES, 2)]
    assert registry.generation() == 3
    assert [(v, at) for v, _, at in registry.history(*ACTIVITY)] == [(1, 100), (2, 400)]
    assert registry.version_of(*ACTIVITY) == registry.applied()[ACTIVITY]
    assert registry.applied()[ACTIVITY].version == 2


def test_a_removed_definition_comes_back_after_its_last_version(registries: Registries) -> None:
    registry = registries.open()
    registry.apply(catalog(view(), windowed(7, "other")), now=1)
    registry.apply(catalog(view(), windowed(8, "other")), now=2)
    removed = registry.apply(catalog(view()), now=3)
    assert [(c.name, c.change, c.version) for c in removed] == [("other", ChangeKind.REMOVE, 2)]
    assert registry.version_of("FeatureView", "other") is None
    assert registry.last_versions()[("FeatureView", "other")] == 2
    again = registry.apply(catalog(view(), windowed(7, "other")), now=4)
    assert [(c.name, c.change, c.version, c.detail) for c in again] == [
        ("other", ChangeKind.ADD, 3, "added again after v2")
    ]
    assert [v for v, _, _ in registry.history("FeatureView", "other")] == [1, 2, 3]
    assert registry.generation() == 4


def test_registries_on_the_same_place_share_everything(registries: Registries) -> None:
    writer, reader = registries.open(), registries.open()
    writer.apply(catalog(view()), now=1)
    assert reader.applied() == writer.applied()
    assert reader.generation() == 1
    assert reader.plan(catalog(view())) == []


def test_an_apply_planned_at_the_current_generation_goes_through(registries: Registries) -> None:
    registry = registries.open()
    generation = registry.generation()
    registry.plan(catalog(view()))
    assert len(registry.apply(catalog(view()), now=1, expected_generation=generation)) == 3
    assert registry.generation() == generation + 1


def test_a_stale_writer_gets_a_conflict_and_writes_nothing(registries: Registries) -> None:
    alice, bob = registries.open(), registries.open()
    alice.apply(catalog(view()), now=1)

    # Bob plans a metadata edit at generation 1 ...
    planned_at = bob.generation()
    assert [c.change for c in bob.plan(catalog(view(owner="bob")))] == [ChangeKind.METADATA]
    # ... while Alice applies a value change first.
    alice.apply(catalog(windowed(7)), now=2)
    after_alice = alice.applied()

    with pytest.raises(RegistryConflict) as conflict:
        bob.apply(catalog(view(owner="bob")), now=3, expected_generation=planned_at)
    assert isinstance(conflict.value, RegistryError)
    assert (conflict.value.expected, conflict.value.found) == (1, 2)
    assert conflict.value.changes == ["generation 2: FeatureView 'activity' values (v1 → v2)"]
    message = str(conflict.value)
    assert "generation 1 -> 2" in message
    assert "FeatureView 'activity' values (v1 → v2)" in message
    assert "run `crmfs plan` and `crmfs apply` again" in message
    # Bob's apply would have reverted Alice's window: nothing of it was written.
    assert bob.applied() == after_alice
    assert bob.generation() == 2
    assert [v for v, _, _ in bob.history(*ACTIVITY)] == [1, 2]

    # Planned again, at the generation it now sees, Bob's apply goes through.
    replanned = bob.generation()
    changes = bob.apply(catalog(view(owner="bob")), now=4, expected_generation=replanned)
    assert [(c.change, c.version) for c in changes] == [(ChangeKind.VALUES, 3)]


def test_a_conflict_is_never_retried(registries: Registries) -> None:
    registry = registries.open(retries=3, backoff_s=5.0)  # PostgreSQL's options; SQLite has none
    registry.apply(catalog(view()), now=1)
    started = time.monotonic()
    with pytest.raises(RegistryConflict):
        registry.apply(catalog(windowed(7)), now=2, expected_generation=0)
    assert time.monotonic() - started < 2.0  # a retry would have waited 5 s first
