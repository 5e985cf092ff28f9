"""The identity graph on disk: restarts, golden ids as of a time, the audit trail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmfs.definitions import IdentifierKind
from crmfs.errors import StorageError
from crmfs.identity.deterministic import ChangeKind, DeterministicLinker, IdentityRecord
from crmfs.identity.graph import IdentityGraph

EMAIL, PHONE, FIRST, LAST = (
    IdentifierKind.EMAIL,
    IdentifierKind.PHONE,
    IdentifierKind.FIRST_NAME,
    IdentifierKind.LAST_NAME,
)


def rec(rid: str, seen: int, *keys: tuple[IdentifierKind, str]) -> IdentityRecord:
    return IdentityRecord(rid, seen, frozenset(keys))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


def test_golden_ids_survive_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    graph = IdentityGraph(tmp_path / "identity.db", clock)
    graph.add(rec("a", 1, (EMAIL, "a@x.com")))
    graph.add(rec("b", 2, (EMAIL, "a@x.com"), (PHONE, "+1")))
    graph.add(rec("c", 3, (EMAIL, "c@x.com"), (FIRST, "cy"), (PHONE, "+9")))
    graph.add(rec("d", 4, (EMAIL, "d@x.com"), (FIRST, "dee"), (PHONE, "+9")))  # +9 shared
    before = graph.linker.clusters()
    graph.close()
    again = IdentityGraph(tmp_path / "identity.db", clock)
    assert again.linker.clusters() == before
    assert [(s.kind, s.value) for s in again.linker.shared_keys()] == [(PHONE, "+9")]
    # It goes on as if it had never stopped.
    changes = again.add(rec("e", 5, (PHONE, "+1")))
    assert changes[0].kind is ChangeKind.JOINED
    assert again.golden_id("e") == again.golden_id("a")
    again.close()


def test_golden_ids_as_of_a_time_and_the_audit_trail(tmp_path: Path) -> None:
    clock = Clock()
    graph = IdentityGraph(tmp_path / "identity.db", clock)
    clock.now = 100
    graph.add(rec("a", 1, (EMAIL, "a@x.com")))
    clock.now = 200
    graph.add(rec("b", 2, (PHONE, "+1")))
    ga, gb = graph.golden_id("a"), graph.golden_id("b")
    assert ga is not None
    assert gb is not None
    clock.now = 300
    merge = graph.add(rec("bridge", 3, (EMAIL, "a@x.com"), (PHONE, "+1")))
    assert merge[0].kind is ChangeKind.MERGED
    assert graph.golden_id("b") == ga
    assert graph.golden_id("b", at_us=299) == gb
    assert graph.golden_id("b", at_us=300) == ga
    assert graph.golden_id("b", at_us=150) is None  # not seen yet
    assert graph.golden_id_of(PHONE, "+1", at_us=250) == gb
    assert graph.golden_id_of(PHONE, "+1") == ga
    assert graph.golden_id_of(EMAIL, "nobody@x.com") is None
    assert graph.members(ga, at_us=250) == {"a"}
    assert graph.members(ga) == {"a", "b", "bridge"}
    assert [e.kind for e in graph.history(ga)] == [ChangeKind.NEW, ChangeKind.MERGED]
    assert [e.kind for e in graph.history(gb)] == [ChangeKind.NEW, ChangeKind.MERGED]
    assert graph.history(ga)[1].retired == (gb,)
    assert graph.history(ga)[1].at_us == 300
    graph.close()


def test_a_key_that_becomes_shared_stops_resolving_from_then_on(tmp_path: Path) -> None:
    clock = Clock()
    graph = IdentityGraph(tmp_path / "identity.db", clock)
    clock.now = 10
    graph.add(rec("ann", 1, (FIRST, "ann"), (LAST, "lee"), (PHONE, "+5")))
    clock.now = 20
    changes = graph.add(rec("bob", 2, (FIRST, "bob"), (LAST, "lee"), (PHONE, "+5")))
    assert changes[0].kind is ChangeKind.NEW
    assert graph.golden_id_of(PHONE, "+5", at_us=15) == graph.golden_id("ann")
    assert graph.golden_id_of(PHONE, "+5", at_us=20) is None
    assert graph.golden_id_of(PHONE, "+5") is None
    graph.close()


def test_a_failed_write_leaves_disk_and_memory_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    graph = IdentityGraph(tmp_path / "identity.db", clock)
    graph.add(rec("a", 1, (EMAIL, "a@x.com")))
    calls = []

    def failing(*args: object) -> None:
        calls.append(args)
        if len(calls) == 2:
            raise StorageError("disk full")
        original(*args)

    original = graph._save
    monkeypatch.setattr(graph, "_save", failing)
    with pytest.raises(StorageError, match="disk full"):
        graph.add_all([rec("b", 2, (EMAIL, "a@x.com")), rec("c", 3, (EMAIL, "c@x.com"))])
    assert graph.golden_id("b") is None  # the whole batch is gone, in memory too
    assert graph.linker.members(graph.golden_id("a") or "") == {"a"}
    monkeypatch.undo()
    graph.add(rec("b", 2, (EMAIL, "a@x.com")))
    assert graph.golden_id("b") == graph.golden_id("a")
    graph.close()


_keys = st.sampled_from(
    [(EMAIL, f"e{i}") for i in range(5)]
    + [(PHONE, f"p{i}") for i in range(3)]
    + [(FIRST, "ann"), (FIRST, "bob"), (LAST, "lee")]
)
_steps = st.lists(
    st.tuples(st.frozensets(_keys, max_size=3), st.booleans()), min_size=1, max_size=20
)


@settings(
    max_examples=int(os.environ.get("CRMFS_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(_steps)
def test_restarts_anywhere_change_nothing(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[tuple[frozenset[tuple[IdentifierKind, str]], bool]],
) -> None:
    """A graph closed and reopened between any two records ends as a linker that never
    stopped, and every record's current assignment on disk is its golden id."""
    path = tmp_path_factory.mktemp("graph") / "identity.db"
    clock = Clock()
    graph = IdentityGraph(path, clock, max_records_per_key=3)
    reference = DeterministicLinker(max_records_per_key=3)
    for i, (keys, restart) in enumerate(steps):
        record = IdentityRecord(f"r{i}", i % 4, keys)
        clock.now += 1
        graph.add(record)
        reference.add(record)
        if restart:
            graph.close()
            graph = IdentityGraph(path, clock, max_records_per_key=3)
    assert graph.linker.clusters() == reference.clusters()
    for i in range(len(steps)):
        assert graph.golden_id(f"r{i}", at_us=clock.now) == reference.golden_id(f"r{i}")
    graph.close()


def test_operator_decisions_are_kept_and_audited(tmp_path: Path) -> None:
    clock = Clock()
    graph = IdentityGraph(tmp_path / "identity.db", clock)
    graph.add(rec("a", 1, (EMAIL, "a@x.com")))
    graph.add(rec("b", 2, (EMAIL, "b@x.com")))
    graph.add(rec("t1", 3, (EMAIL, "team@x.com"), (PHONE, "+7")))
    graph.add(rec("t2", 4, (EMAIL, "team@x.com")))
    clock.now = 5_000
    graph.link("a", "b", "same person, checked by phone")
    graph.do_not_link("t1", "t2", "a team mailbox")
    merged, split_from = graph.golden_id("a"), graph.golden_id("t1")
    graph.close()
    again = IdentityGraph(tmp_path / "identity.db", clock)
    assert again.golden_id("b") == merged
    assert again.golden_id("t2") != again.golden_id("t1") == split_from
    assert again.linker.operator_links() == {frozenset({"a", "b"}): "same person, checked by phone"}
    assert again.golden_id_of(EMAIL, "team@x.com") is None
    assert again.golden_id("b", at_us=4_999) != merged
    reasons = [e.reason for e in again.history(merged or "")]
    assert any("operator: same person" in r for r in reasons)
    assert any("a team mailbox" in r for r in (e.reason for e in again.history(split_from or "")))
    # A new record with b's email still lands in the merged cluster.
    again.add(rec("b2", 6, (EMAIL, "b@x.com")))
    assert again.golden_id("b2") == merged
    again.close()
