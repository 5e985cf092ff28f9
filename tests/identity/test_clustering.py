"""Clustering: scored pairs join deterministic clusters without chaining, in any order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmfs.identity.clustering import (
    BaseCluster,
    IncrementalResolver,
    LinkPolicy,
    ScoredPair,
    base_clusters,
    resolve,
)


def single(rid: str, t: int) -> BaseCluster:
    return BaseCluster("g" + rid, frozenset({rid}), (t, rid))


def partition(clusters: dict[str, frozenset[str]]) -> set[frozenset[str]]:
    return set(clusters.values())


def test_pairs_above_the_threshold_join_clusters_and_the_oldest_names_them() -> None:
    base = [BaseCluster("g1", frozenset({"a", "a2"}), (5, "a")), single("b", 1), single("c", 9)]
    out = resolve(base, [ScoredPair("a2", "b", 0.9), ScoredPair("b", "c", 0.3)])
    assert out == {"gb": frozenset({"a", "a2", "b"}), "gc": frozenset({"c"})}


def test_no_chaining_through_conflicting_names() -> None:
    # a~b and b~c are likely, but a and c name different people: b joins one of them only.
    base = [single(x, i) for i, x in enumerate("abc")]
    pairs = [ScoredPair("a", "b", 0.95), ScoredPair("b", "c", 0.9)]
    out = resolve(base, pairs, conflict=lambda x, y: {x, y} == {"a", "c"})
    assert partition(out) == {frozenset({"a", "b"}), frozenset({"c"})}
    # Without the conflict, everything chains into one cluster.
    assert partition(resolve(base, pairs)) == {frozenset("abc")}


def test_a_scored_pair_below_the_floor_keeps_clusters_apart() -> None:
    base = [single(x, i) for i, x in enumerate("abc")]
    pairs = [ScoredPair("a", "b", 0.95), ScoredPair("b", "c", 0.9), ScoredPair("a", "c", 0.01)]
    out = resolve(base, pairs, LinkPolicy(threshold=0.5, floor=0.05))
    assert partition(out) == {frozenset({"a", "b"}), frozenset({"c"})}
    # With the floor off, the unlikely pair no longer vetoes.
    assert partition(resolve(base, pairs, LinkPolicy(floor=0.0))) == {frozenset("abc")}


def test_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="threshold"):
        LinkPolicy(threshold=1.0)
    with pytest.raises(ValueError, match="floor"):
        LinkPolicy(threshold=0.5, floor=0.6)


def test_incremental_updates_report_the_region_before_and_after() -> None:
    resolver = IncrementalResolver(LinkPolicy())
    resolver.update(changed=[single("a", 1)])
    before, after = resolver.update(changed=[single("b", 2)], pairs=[ScoredPair("b", "a", 0.8)])
    assert set(before) == {"ga"}
    assert after["ga"].members == frozenset({"a", "b"})
    assert resolver.golden_id("b") == "ga"
    # The deterministic layer merges b's cluster into a new base cluster (a split of the
    # final one follows when its pair no longer holds): c arrives and conflicts with a.
    resolver.conflict = lambda x, y: {x, y} == {"a", "c"}
    resolver.update(
        changed=[BaseCluster("gb", frozenset({"b", "c"}), (2, "b"))],
        pairs=[ScoredPair("c", "a", 0.9)],
    )
    assert partition(resolver.clusters()) == {frozenset({"a"}), frozenset({"b", "c"})}
    # Retiring a base cluster drops its records.
    resolver.update(retired=["gb"])
    assert partition(resolver.clusters()) == {frozenset({"a"})}


def test_base_clusters_from_a_mapping() -> None:
    made = base_clusters({"g1": ["a", "b"]}, lambda gid: (3, "a"))
    assert made == [BaseCluster("g1", frozenset({"a", "b"}), (3, "a"))]


RECORDS = [f"r{i}" for i in range(9)]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[BaseCluster], list[ScoredPair], set[frozenset[str]]]:
    """Base clusters over RECORDS, scored pairs between them, and conflicting pairs."""
    group = draw(st.lists(st.integers(0, 5), min_size=len(RECORDS), max_size=len(RECORDS)))
    members: dict[int, set[str]] = {}
    for rid, g in zip(RECORDS, group, strict=True):
        members.setdefault(g, set()).add(rid)
    base = [BaseCluster(f"g{g}", frozenset(m), (g, min(m))) for g, m in sorted(members.items())]
    pair = st.tuples(st.sampled_from(RECORDS), st.sampled_from(RECORDS)).filter(
        lambda p: p[0] != p[1]
    )
    # Distinct probabilities: ties between pairs are broken by record ids, also fine, but
    # distinct values exercise the best-first order.
    scored = draw(st.dictionaries(pair.map(frozenset), st.floats(0.0, 1.0), max_size=14))
    pairs = [ScoredPair(*sorted(k), p) for k, p in scored.items()]
    conflicts = set(draw(st.lists(pair.map(frozenset), max_size=4)))
    return base, pairs, conflicts


@settings(max_examples=60, deadline=None)
@given(world=worlds(), data=st.data())
def test_any_arrival_order_gives_the_batch_clusters(
    world: tuple[list[BaseCluster], list[ScoredPair], set[frozenset[str]]], data: st.DataObject
) -> None:
    base, pairs, conflicts = world

    def conflict(a: str, b: str) -> bool:
        return frozenset((a, b)) in conflicts

    expected = resolve(base, pairs, conflict=conflict)
    # Every record in exactly one cluster; no conflicting pair joined (within one base
    # cluster is the deterministic layer's business).
    assert sorted(r for c in expected.values() for r in c) == sorted(RECORDS)
    base_of = {r: b.golden_id for b in base for r in b.members}
    for members in expected.values():
        assert not any(
            frozenset((a, b)) in conflicts and base_of[a] != base_of[b]
            for a in members
            for b in members
        )
    # Stream: base clusters and pairs in a random order, in small steps.
    steps: list[tuple[str, object]] = [("base", b) for b in base] + [("pair", p) for p in pairs]
    order = data.draw(st.permutations(steps))
    resolver = IncrementalResolver(LinkPolicy(), conflict)
    for kind, item in order:
        if kind == "base":
            assert isinstance(item, BaseCluster)
            resolver.update(changed=[item])
        else:
            assert isinstance(item, ScoredPair)
            resolver.update(pairs=[item])
    assert resolver.clusters() == expected
