"""What each worker process of the concurrency tests does (importable, for spawned processes)."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

from crmfs.errors import RegistryConflict
from tests.registry.backends import RegistryAt
from tests.registry.catalogs import catalog, windowed

Outcome = tuple[str, int, list[tuple[str, str, str, int]] | str]


def reporting(worker: Callable[..., None]) -> Callable[..., None]:
    """A worker that puts ("error", 0, traceback) instead of dying silently, so the test
    fails at once with the reason rather than waiting for an outcome that never comes."""

    @functools.wraps(worker)
    def run(*args: Any) -> None:
        try:
            worker(*args)
        except Exception:
            args[-1].put(("error", 0, traceback.format_exc()))

    return run


@reporting
def apply_windows(
    at: RegistryAt,
    days: list[int],
    expected_generation: int | None,
    start: Barrier,
    outcomes: Queue[Outcome],
) -> None:
    """Apply the activity view summed over each of ``days`` in turn, all workers at once.

    Puts ("applied", days, changes) or ("conflict", days, message) per apply.
    """
    registry = at.open(retries=5)
    try:
        start.wait(timeout=30)
        for each in days:
            try:
                changes = registry.apply(
                    catalog(windowed(each)), now=each, expected_generation=expected_generation
                )
            except RegistryConflict as conflict:
                outcomes.put(("conflict", each, str(conflict)))
            else:
                summary = [(c.kind, c.name, str(c.change), c.version) for c in changes]
                outcomes.put(("applied", each, summary))
    finally:
        registry.close()


@reporting
def open_at_once(at: RegistryAt, start: Barrier, outcomes: Queue[Outcome]) -> None:
    """Open a registry on a place no one created yet, together with the other workers."""
    start.wait(timeout=30)
    registry = at.open()
    try:
        outcomes.put(("opened", registry.generation(), ""))
    finally:
        registry.close()
