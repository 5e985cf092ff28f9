"""The probabilistic layer over the deterministic one, record by record.

Once a model is fitted (``IdentityGraph.fit_matcher``), each new record is scored on arrival
against every record seen before that shares a blocking key (the matcher's blocking index),
and the deterministic clusters plus the scored pairs are resolved into final clusters without
chaining (``IncrementalResolver``). Golden ids are the final clusters' (their oldest base
cluster's id). ``final_changes`` turns what a step re-resolved into the graph's changes:
pure merges as ``MERGED`` (online states combine), anything else as one ``SPLIT`` over the
region (its states are recomputed from the log).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from crmfs.identity.clustering import (
    BaseCluster,
    IncrementalResolver,
    LinkPolicy,
    Resolved,
    ScoredPair,
)
from crmfs.identity.deterministic import (
    ChangeKind,
    ClusterChange,
    DeterministicLinker,
    IdentityRecord,
)
from crmfs.identity.lexicon import Lexicon
from crmfs.identity.match_columns import (
    DEFAULT_LEXICON,
    DEFAULT_POLICY,
    DEFAULT_SETTINGS,
    MATCH_COLUMNS,
    Columns,
    columns_of,
    conflict,
)
from crmfs.identity.matcher import MatchSettings, ProbabilisticMatcher
from crmfs.identity.probabilistic import FellegiSunter


def base_of(linker: DeterministicLinker, golden_id: str) -> BaseCluster:
    first = linker.record(linker.first_record(golden_id))
    assert first is not None
    return BaseCluster(golden_id, linker.members(golden_id), (first.seen_us, first.record_id))


class ProbabilisticLayer:
    def __init__(
        self,
        model: FellegiSunter,
        settings: MatchSettings = DEFAULT_SETTINGS,
        policy: LinkPolicy = DEFAULT_POLICY,
        lexicon: Lexicon = DEFAULT_LEXICON,
    ) -> None:
        self.matcher = ProbabilisticMatcher(settings, model=model)
        self.policy = policy
        self.lexicon = lexicon
        self.resolver = IncrementalResolver(policy, self._conflict)
        self._columns: dict[str, Columns] = {}
        self._ids: list[str] = []
        self.do_not_link: set[frozenset[str]] = set()

    def _conflict(self, a: str, b: str) -> bool:
        if frozenset((a, b)) in self.do_not_link:
            return True
        return conflict(self._columns[a], self._columns[b])

    # -- state -----------------------------------------------------------------------------

    def restore(
        self,
        linker: DeterministicLinker,
        records: Sequence[IdentityRecord],
        pairs: Iterable[ScoredPair],
    ) -> None:
        """Index ``records`` (in the order they arrived) and resolve with stored ``pairs``."""
        self._ids = [r.record_id for r in records]
        self._columns = {r.record_id: columns_of(r, self.lexicon) for r in records}
        self.matcher.index({c: [self._columns[rid][c] for rid in self._ids] for c in MATCH_COLUMNS})
        base = [base_of(linker, gid) for gid in sorted(linker.clusters())]
        self.resolver.update(base, (), pairs)

    def golden_id(self, record_id: str) -> str:
        return self.resolver.golden_id(record_id)

    def members(self, golden_id: str) -> frozenset[str]:
        clusters = self.resolver.clusters()
        return clusters.get(golden_id, frozenset())

    def columns(self, record_id: str) -> Columns:
        return self._columns[record_id]

    # -- changes ---------------------------------------------------------------------------

    def add(
        self, linker: DeterministicLinker, record: IdentityRecord, det: list[ClusterChange]
    ) -> tuple[list[ClusterChange], list[ScoredPair]]:
        """Score a new record and re-resolve what it touched; the final changes and the
        pairs scored (to be stored)."""
        rid = record.record_id
        columns = columns_of(record, self.lexicon)
        self._columns[rid] = columns
        scored = self.matcher.score({c: columns[c] for c in MATCH_COLUMNS})
        pairs = [ScoredPair(rid, self._ids[i], p) for i, p in scored]
        self._ids.append(rid)
        return self.update(linker, det, pairs, rid), pairs

    def update(
        self,
        linker: DeterministicLinker,
        det: list[ClusterChange],
        pairs: Iterable[ScoredPair] = (),
        new_record: str | None = None,
        also: Iterable[str] = (),
    ) -> list[ClusterChange]:
        """Follow deterministic changes (and new pairs) into the final clusters; ``also``
        names base clusters to re-resolve anyway (after an operator's decision)."""
        retired = {g for c in det if c.kind is ChangeKind.MERGED for g in c.retired}
        touched = {c.golden_id for c in det} | {g for c in det for g in c.created} | set(also)
        changed = [base_of(linker, g) for g in sorted(touched - retired) if linker.members(g)]
        pairs = list(pairs)
        before, after = self.resolver.update(changed, retired, pairs)
        return final_changes(before, after, new_record, _why(det, pairs, self.policy))


def _why(det: list[ClusterChange], pairs: list[ScoredPair], policy: LinkPolicy) -> str:
    reasons = [c.reason for c in det if c.reason]
    linked = [p for p in pairs if p.probability >= policy.threshold]
    if linked:
        best = max(linked, key=lambda p: p.probability)
        reasons.append(
            f"probabilistic: {best.left} ~ {best.right} p={best.probability:.3f}"
            + (f" (+{len(linked) - 1} more)" if len(linked) > 1 else "")
        )
    return "; ".join(reasons) or "re-resolved"


def final_changes(
    before: Mapping[str, Resolved],
    after: Mapping[str, Resolved],
    new_record: str | None,
    reason: str,
) -> list[ClusterChange]:
    """The changes between the final clusters of a region before and after a step."""
    before_of = {m: gid for gid, c in before.items() for m in c.members}
    after_of = {m: gid for gid, c in after.items() for m in c.members}
    spread = any(
        len({after_of[m] for m in c.members if m in after_of}) > 1 for c in before.values()
    )
    changes: list[ClusterChange] = []
    if spread:  # a cluster came apart: recompute every id of the region
        ids = sorted(set(before) | set(after))
        head = ids[0] if ids[0] in after else next((i for i in ids if i in after), ids[0])
        created = tuple(i for i in ids if i != head)
        return [ClusterChange(ChangeKind.SPLIT, head, new_record, created=created, reason=reason)]
    for gid, cluster in sorted(after.items()):
        sources = {before_of[m] for m in cluster.members if m in before_of}
        retired = tuple(sorted(sources - {gid}))
        if retired:
            in_it = new_record if new_record in cluster.members else None
            changes.append(
                ClusterChange(ChangeKind.MERGED, gid, in_it, retired=retired, reason=reason)
            )
    if new_record is not None and new_record in after_of:
        gid = after_of[new_record]
        if not any(c.golden_id == gid for c in changes):
            kind = ChangeKind.JOINED if gid in before else ChangeKind.NEW
            if kind is ChangeKind.NEW and len(after[gid].members) > 1:
                kind = ChangeKind.JOINED
            changes.append(ClusterChange(kind, gid, new_record))
    return changes
