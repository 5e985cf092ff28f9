"""Final clusters from deterministic clusters and scored probabilistic pairs, without chaining.

The deterministic layer gives **base clusters** (records sharing a strong key, each with a
golden id). The probabilistic layer scores candidate pairs of records. Linking every pair at
or above the threshold and taking connected components would chain: A looks like B, B looks
like C, and A and C (colleagues with one surname, a household) end up one person. Here a
pair joins two clusters only if the join is **consistent**:

- no pair of their members names different people (``conflict``, e.g. the deterministic
  layer's ``names_conflict``), and
- no scored pair between their members is below ``floor`` (the model saw that pair and
  found it unlikely).

Pairs are taken best first (probability, then record ids), so the result depends only on
the base clusters and the set of scored pairs, never on the order records arrived in.

``resolve`` clusters a whole set at once. ``IncrementalResolver`` keeps the base clusters and
the scored pairs and, when a record arrives (its base cluster changed and it brought scored
candidates), re-resolves only the **components** it touches: base clusters connected by pairs
at or above the threshold. Components never interact, so the incremental result is always the
batch result over everything seen (tested with random arrival orders).

A final cluster's golden id is that of its oldest base cluster (``BaseCluster.created``), so
golden ids change only on merges and splits, as in the deterministic layer.

Example::

    base = [BaseCluster("g1", frozenset({"a"}), (1, "a")),
            BaseCluster("g2", frozenset({"b"}), (2, "b"))]
    resolve(base, [ScoredPair("a", "b", 0.97)])   # {"g1": frozenset({"a", "b"})}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

Conflict = Callable[[str, str], bool]
Age = tuple[int, str]


@dataclass(frozen=True)
class BaseCluster:
    """A deterministic cluster: its golden id, records, and when it was created (the first
    record's ``seen_us`` and id, as ``DeterministicLinker`` orders clusters)."""

    golden_id: str
    members: frozenset[str]
    created: Age


@dataclass(frozen=True)
class ScoredPair:
    """Two records and the probability that they are one person."""

    left: str
    right: str
    probability: float


@dataclass(frozen=True)
class LinkPolicy:
    """When a scored pair joins two clusters.

    ``threshold``: the pair's probability must be at least this. ``floor``: every scored pair
    between the two clusters must be at least this (0 turns the check off)."""

    threshold: float = 0.5
    floor: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {self.threshold}")
        if not 0.0 <= self.floor <= self.threshold:
            raise ValueError(f"floor must be between 0 and the threshold, not {self.floor}")


@dataclass(frozen=True)
class Resolved:
    """One final cluster: its golden id, records, and the base clusters it joins."""

    golden_id: str
    members: frozenset[str]
    base_ids: frozenset[str]


def _never(_a: str, _b: str) -> bool:
    return False


def _key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


@dataclass
class IncrementalResolver:
    """Base clusters and scored pairs, resolved into final clusters as they change.

    ``update`` takes the base clusters that are new or changed (and the ids of those that
    retired) plus newly scored pairs, and returns the final clusters before and after in the
    region it re-resolved, for the caller to turn into joins, merges and splits."""

    policy: LinkPolicy = field(default_factory=LinkPolicy)
    conflict: Conflict = _never
    _base: dict[str, BaseCluster] = field(default_factory=dict, init=False)
    _base_of: dict[str, str] = field(default_factory=dict, init=False)  # record -> base id
    _scores: dict[tuple[str, str], float] = field(default_factory=dict, init=False)
    _partners: dict[str, set[str]] = field(default_factory=dict, init=False)  # record -> scored
    _final_of: dict[str, str] = field(default_factory=dict, init=False)  # base id -> final id
    _final: dict[str, Resolved] = field(default_factory=dict, init=False)
    _conflicts: dict[tuple[str, str], bool] = field(default_factory=dict, init=False)

    # -- reads ---------------------------------------------------------------------------

    def golden_id(self, record_id: str) -> str:
        return self._final_of[self._base_of[record_id]]

    def clusters(self) -> dict[str, frozenset[str]]:
        return {gid: c.members for gid, c in self._final.items()}

    def cluster(self, golden_id: str) -> Resolved:
        return self._final[golden_id]

    # -- writes --------------------------------------------------------------------------

    def update(
        self,
        changed: Iterable[BaseCluster] = (),
        retired: Iterable[str] = (),
        pairs: Iterable[ScoredPair] = (),
    ) -> tuple[dict[str, Resolved], dict[str, Resolved]]:
        """Apply base-cluster changes and new scores; the final clusters of the region
        re-resolved, ``(before, after)``, each keyed by golden id."""
        touched: set[str] = set()  # base ids whose component must be re-resolved
        for gid in retired:
            old = self._base.pop(gid, None)
            if old is not None:
                touched.update(self._neighbours(old))
                touched.add(gid)
                for rid in old.members:
                    if self._base_of.get(rid) == gid:
                        del self._base_of[rid]
        for cluster in changed:
            old = self._base.get(cluster.golden_id)
            if old is not None:
                touched.update(self._neighbours(old))
            self._base[cluster.golden_id] = cluster
            for rid in cluster.members:
                self._base_of[rid] = cluster.golden_id
            touched.add(cluster.golden_id)
        for pair in pairs:
            if pair.left == pair.right:
                continue
            self._scores[_key(pair.left, pair.right)] = pair.probability
            self._partners.setdefault(pair.left, set()).add(pair.right)
            self._partners.setdefault(pair.right, set()).add(pair.left)
            for rid in (pair.left, pair.right):
                if rid in self._base_of:
                    touched.add(self._base_of[rid])
        # The region: whole components, and every final cluster they held before, closed
        # under both (a split base cluster may leave parts of a final cluster apart).
        region: set[str] = set()
        before_ids: set[str] = set()
        while True:
            region = self._component(touched | region)
            finals = {self._final_of[g] for g in touched | region if g in self._final_of}
            if finals <= before_ids:
                break
            before_ids |= finals
            region |= {b for gid in finals for b in self._final[gid].base_ids if b in self._base}
        before = {gid: self._final.pop(gid) for gid in before_ids}
        for resolved in before.values():
            for base_id in resolved.base_ids:
                self._final_of.pop(base_id, None)
        after = self._resolve(region)
        for resolved in after.values():
            self._final[resolved.golden_id] = resolved
            for base_id in resolved.base_ids:
                self._final_of[base_id] = resolved.golden_id
        return before, after

    # -- internals -----------------------------------------------------------------------

    def _neighbours(self, cluster: BaseCluster) -> set[str]:
        """Base ids linked to ``cluster`` by a pair at or above the threshold."""
        found = set()
        for rid in cluster.members:
            for other in self._partners.get(rid, ()):
                if self._scores[_key(rid, other)] >= self.policy.threshold:
                    base = self._base_of.get(other)
                    if base is not None:
                        found.add(base)
        return found

    def _component(self, start: set[str]) -> set[str]:
        """The base ids reachable from ``start`` through pairs at or above the threshold."""
        seen = {gid for gid in start if gid in self._base}
        todo = list(seen)
        while todo:
            for nxt in self._neighbours(self._base[todo.pop()]):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    def _resolve(self, base_ids: set[str]) -> dict[str, Resolved]:
        """Best-first consistent joins among the base clusters ``base_ids`` (a union of
        whole components)."""
        parent = {gid: gid for gid in base_ids}
        members = {gid: set(self._base[gid].members) for gid in base_ids}

        def find(gid: str) -> str:
            while parent[gid] != gid:
                parent[gid] = parent[parent[gid]]
                gid = parent[gid]
            return gid

        records = {rid for gid in base_ids for rid in self._base[gid].members}
        links = sorted(
            (-self._scores[_key(a, b)], a, b)
            for a in records
            for b in self._partners.get(a, ())
            if a < b and b in records and self._scores[_key(a, b)] >= self.policy.threshold
        )
        for _, a, b in links:
            ra, rb = find(self._base_of[a]), find(self._base_of[b])
            if ra == rb or not self._consistent(members[ra], members[rb]):
                continue
            parent[rb] = ra
            members[ra] |= members.pop(rb)
        groups: dict[str, set[str]] = {}
        for gid in base_ids:
            groups.setdefault(find(gid), set()).add(gid)
        out = {}
        for group in groups.values():
            oldest = min(group, key=lambda g: self._base[g].created)
            everyone = frozenset(r for g in group for r in self._base[g].members)
            out[oldest] = Resolved(oldest, everyone, frozenset(group))
        return out

    def _consistent(self, left: set[str], right: set[str]) -> bool:
        floor = self.policy.floor
        for a in left:
            partners = self._partners.get(a, set())
            for b in right:
                if b in partners and self._scores[_key(a, b)] < floor:
                    return False
                if self._conflicting(a, b):
                    return False
        return True

    def forget_conflict(self, a: str, b: str) -> None:
        """Ask ``conflict`` again for this pair (its answer changed: a do-not-link)."""
        self._conflicts.pop(_key(a, b), None)

    def _conflicting(self, a: str, b: str) -> bool:
        key = _key(a, b)
        found = self._conflicts.get(key)
        if found is None:
            found = self._conflicts[key] = self.conflict(*key)
        return found


def resolve(
    base: Iterable[BaseCluster],
    pairs: Iterable[ScoredPair],
    policy: LinkPolicy | None = None,
    conflict: Conflict | None = None,
) -> dict[str, frozenset[str]]:
    """Final clusters (golden id -> records) of a whole set: ``base`` clusters joined by
    consistent ``pairs``, best first (see the module's doc)."""
    resolver = IncrementalResolver(policy or LinkPolicy(), conflict or _never)
    resolver.update(changed=base, pairs=pairs)
    return resolver.clusters()


def base_clusters(
    clusters: Mapping[str, Iterable[str]], created: Callable[[str], Age]
) -> list[BaseCluster]:
    """``BaseCluster``s from golden id -> records and a function giving each golden id's
    creation (for ``DeterministicLinker``: its first record's ``seen_us`` and id)."""
    return [BaseCluster(gid, frozenset(m), created(gid)) for gid, m in clusters.items()]
