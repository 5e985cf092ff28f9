"""Applies from several real processes at once, on both registries: serialized, never lost."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

from crmfs.definitions import fingerprint
from tests.registry.backends import Registries, RegistryAt
from tests.registry.catalogs import catalog, view, windowed
from tests.registry.workers import Outcome, apply_windows, open_at_once

WORKERS = 4
ACTIVITY = ("FeatureView", "activity")


def _run(worker: Callable[..., None], jobs: list[tuple[Any, ...]], expected: int) -> list[Outcome]:
    """Start one spawned process per job, all released at once; their outcomes."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(jobs))
    outcomes: multiprocessing.Queue[Outcome] = context.Queue()
    processes = [context.Process(target=worker, args=(*job, start, outcomes)) for job in jobs]
    for process in processes:
        process.start()
    collected = [outcomes.get(timeout=30) for _ in range(expected)]
    errors = [str(o[2]) for o in collected if o[0] == "error"]
    assert not errors, "\n".join(errors)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    outcomes.close()
    outcomes.join_thread()
    return collected


def _value_fp(days: int) -> str:
    return fingerprint(windowed(days).value_spec())


def test_one_plan_many_writers_exactly_one_wins(registries: Registries) -> None:
    registry = registries.open()
    registry.apply(catalog(view()), now=0)
    planned_at = registry.generation()

    # Four processes planned against generation 1, each a different window, apply at once.
    windows = [7, 14, 21, 28]
    jobs = [(registries.at, [days], planned_at) for days in windows]
    outcomes = _run(apply_windows, jobs, expected=len(jobs))

    won = [o for o in outcomes if o[0] == "applied"]
    lost = [o for o in outcomes if o[0] == "conflict"]
    assert len(won) == 1
    assert len(lost) == WORKERS - 1
    _, winner, changes = won[0]
    assert changes == [("FeatureView", "activity", "values", 2)]
    for _, _, message in lost:
        assert "generation 1 -> 2" in str(message)
        assert "FeatureView 'activity' values (v1 → v2)" in str(message)
    assert registry.generation() == 2
    assert [v for v, _, _ in registry.history(*ACTIVITY)] == [1, 2]
    assert registry.applied()[ACTIVITY].value_fp == _value_fp(winner)


def test_writers_without_a_plan_are_serialized_and_none_is_lost(registries: Registries) -> None:
    registry = registries.open()
    registry.apply(catalog(view()), now=0)

    # Each process applies three windows of its own in turn; every apply changes values.
    jobs: list[tuple[RegistryAt, list[int], None]] = [
        (registries.at, [10 * worker + n for n in (1, 2, 3)], None) for worker in range(WORKERS)
    ]
    outcomes = _run(apply_windows, jobs, expected=3 * WORKERS)

    assert {o[0] for o in outcomes} == {"applied"}
    version_of_window = {}
    for _, days, changes in outcomes:
        assert isinstance(changes, list)
        assert [(kind, name, change) for kind, name, change, _ in changes] == [
            ("FeatureView", "activity", "values")
        ]
        version_of_window[days] = changes[0][3]
    # Each apply planned against the one before it: twelve distinct versions, no gap.
    assert sorted(version_of_window.values()) == list(range(2, 3 * WORKERS + 2))
    assert registry.generation() == 3 * WORKERS + 1
    history = registry.history(*ACTIVITY)
    assert [v for v, _, _ in history] == list(range(1, 3 * WORKERS + 2))
    recorded = {version: fp for version, fp, _ in history}
    for days, version in version_of_window.items():
        assert recorded[version] == _value_fp(days)
    current = registry.applied()[ACTIVITY]
    assert (current.version, current.value_fp) == (history[-1][0], history[-1][1])


def test_processes_creating_the_tables_at_once_all_open_them(pg_registry_at: RegistryAt) -> None:
    outcomes = _run(open_at_once, [(pg_registry_at,)] * WORKERS, expected=WORKERS)
    assert outcomes == [("opened", 0, "")] * WORKERS
