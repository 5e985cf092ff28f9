"""What the identity graph's worker processes do (importable, for spawned processes).

Each puts what it saw on ``outcomes``; a worker that fails puts ("error", traceback)
instead of dying silently, so the test fails at once with the reason."""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

from crmfs.errors import IdentityError
from crmfs.identity.deterministic import IdentityRecord
from tests.identity.graph_places import GraphAt

Outcome = tuple[str, Any]
WAIT_S = 30


def reporting(worker: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(worker)
    def run(*args: Any) -> None:
        try:
            worker(*args)
        except Exception:
            args[-1].put(("error", traceback.format_exc()))

    return run


def _clock() -> int:
    return 1_000


@reporting
def hold_writer(at: GraphAt, release: Event, outcomes: Queue[Outcome]) -> None:
    """Open the graph as its one writer (``writers: one``), say so (with this process's id),
    hold it until released."""
    graph = at.open(_clock, writers="one")
    outcomes.put(("writing", os.getpid()))
    release.wait(WAIT_S)
    graph.close()
    outcomes.put(("closed", os.getpid()))


@reporting
def read_before_and_after(
    at: GraphAt, records: tuple[str, ...], at_us: int, go: Event, outcomes: Queue[Outcome]
) -> None:
    """Open the graph read-only; report the golden ids of ``records`` now; when told, report
    them again (from memory, then as of ``at_us`` from the tables), refresh, report again."""
    graph = at.open(_clock, read_only=True)
    try:
        outcomes.put(("opened", [graph.golden_id(r) for r in records]))
        go.wait(WAIT_S)
        stale = [graph.golden_id(r) for r in records]
        as_of = [graph.golden_id(r, at_us=at_us) for r in records]
        kinds = [str(e.kind) for e in graph.changes_after(0)]
        changed = graph.refresh()
        fresh = [graph.golden_id(r) for r in records]
        again = graph.refresh()
        try:
            graph.add(IdentityRecord("intruder", 9, frozenset()))
            refused = ""
        except IdentityError as exc:
            refused = str(exc)
        outcomes.put(("read", (stale, as_of, kinds, changed, fresh, again, refused)))
    finally:
        graph.close()


@reporting
def add_one_by_one(
    at: GraphAt, records: list[IdentityRecord], go: Event, outcomes: Queue[Outcome]
) -> None:
    """Open the graph to write (writers take turns), wait for the signal, then add
    ``records`` one step each."""
    graph = at.open(_clock)
    outcomes.put(("ready", os.getpid()))
    go.wait(WAIT_S)
    for record in records:
        graph.add(record)
    graph.close()
    outcomes.put(("done", len(records)))
