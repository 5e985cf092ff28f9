"""The identity service's Python face: look people up, show clusters, merge and split.

``FeatureStore.identity`` is an ``IdentityService``. References to people (``ref``) may be
a golden id (``g...``), an identity record id (``r...``), or an identifier as
``"kind=value"`` (``"email=ann@example.com"``, ``"phone=+14155550100"``); identifiers are
normalized like ingested ones. Merges and splits are recorded in the graph with the reason
and followed by the online states at once (``after_change``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from crmfs.definitions import IdentifierKind
from crmfs.errors import IdentityError
from crmfs.identity.clustering import LinkPolicy
from crmfs.identity.deterministic import ClusterChange, IdentityRecord, SharedKey
from crmfs.identity.graph import AuditEntry, IdentityGraph
from crmfs.identity.lookup import IdentifierLookup

# Scored pairs from here up to the auto-link threshold are listed for review, not linked.
DEFAULT_REVIEW_THRESHOLD = 0.02


class IdentityNotFound(IdentityError):
    """A reference names no golden id, record or known identifier."""


@dataclass(frozen=True)
class Member:
    record_id: str
    seen_us: int
    identifiers: list[tuple[str, str]]  # (kind, normalized value)


@dataclass(frozen=True)
class IdentityCard:
    """A golden id now: its records and every change that touched it."""

    golden_id: str
    members: list[Member]
    history: list[AuditEntry]


@dataclass(frozen=True)
class KeyEvidence:
    kind: str
    value: str
    status: str  # "links", "shared: <why>" or "not linking (weak)"


@dataclass(frozen=True)
class Explanation:
    """Why two records are, or are not, one person."""

    record_a: str
    record_b: str
    golden_a: str
    golden_b: str
    same_person: bool
    shared_identifiers: list[KeyEvidence]
    operator_link: str | None
    summary: str
    probability: float | None = None  # the probabilistic layer's score, if it scored them
    contributions: dict[str, float] | None = None  # each comparison's log2(m/u)


class IdentityService:
    def __init__(
        self,
        graph: IdentityGraph,
        default_region: str = "US",
        after_change: Callable[[], object] | None = None,
        review_threshold: float = DEFAULT_REVIEW_THRESHOLD,
        policy: LinkPolicy | None = None,
    ) -> None:
        """``policy``: the auto-link threshold and the no-link floor of the probabilistic
        layer (default: ``match_columns.DEFAULT_POLICY``); pairs from ``review_threshold`` up
        to the threshold are listed for review."""
        self.graph = graph
        self.review_threshold = review_threshold
        self.policy = policy
        self.default_region = default_region
        self.after_change = after_change

    @property
    def _lookup(self) -> IdentifierLookup:
        return IdentifierLookup(self.graph, self.default_region)

    # -- lookups ---------------------------------------------------------------------------

    def resolve(self, kind: str, value: object) -> str | None:
        """The golden id an identifier stands for now (None: no one, or several people)."""
        return self._lookup.golden_ids_now(_kind(kind), [value])[0]

    def record_of(self, kind: str, value: object) -> str | None:
        """The identity record an identifier belongs to (the first, if several)."""
        return self._lookup.record_of(_kind(kind), value)

    def record(self, ref: str) -> str:
        """The record a reference names (a golden id names its cluster's first record)."""
        linker = self.graph.linker
        if "=" in ref:
            kind, _, value = ref.partition("=")
            found = self.record_of(kind.strip(), value.strip())
            if found is None:
                raise IdentityNotFound(f"no record carries {ref!r} (or several people share it)")
            return found
        if linker.record(ref) is not None:
            return ref
        if linker.members(ref):
            return linker.first_record(ref)
        members = self.graph.members(ref)
        if members:
            return min(members)
        raise IdentityNotFound(
            f"{ref!r} is no golden id, record id or identifier; give e.g. 'email=ann@example.com'"
        )

    def golden_id(self, ref: str) -> str:
        """The golden id now of whoever ``ref`` names."""
        golden = self.graph.golden_id(self.record(ref))
        assert golden is not None
        return golden

    def show(self, ref: str) -> IdentityCard:
        """The cluster ``ref`` belongs to: members with their identifiers, and its history."""
        gid = self.golden_id(ref)
        members = []
        for rid in sorted(self.graph.members(gid)):
            record = self.graph.linker.record(rid)
            assert record is not None
            members.append(_member(record))
        return IdentityCard(gid, members, self.graph.history(gid))

    def fit(self) -> str:
        """Fit the probabilistic layer on the records seen and re-resolve them (merges are
        followed online); a one-line report."""
        report = self.graph.fit_matcher(self.policy)
        self._changed()
        return (
            f"fitted on {len(self.graph.linker.clusters())} deterministic clusters:"
            f" {report.candidate_pairs} candidate pairs, prior {report.prior:.2e};"
            f" {len(self.graph.clusters())} golden ids now"
        )

    def review(self, limit: int = 100) -> list[tuple[str, str, float]]:
        """Pairs of records a person should decide on (``merge`` or ``split``): scored in
        the review band (from ``review_threshold`` up to the auto-link threshold), or above
        it but kept apart by a conflict; best first."""
        return self.graph.review_pairs(self.review_threshold, limit)

    def shared_identifiers(self) -> list[SharedKey]:
        """Identifiers that stopped linking (household phones, ``info@`` mailboxes ...)."""
        return self.graph.linker.shared_keys()

    def explain(self, ref_a: str, ref_b: str) -> Explanation:
        """Why two records are or are not linked: the identifiers they share and whether
        each links, an operator's decision, and whether they are one cluster now."""
        linker = self.graph.linker
        a, b = self.record(ref_a), self.record(ref_b)
        record_a, record_b = linker.record(a), linker.record(b)
        assert record_a is not None
        assert record_b is not None
        evidence = []
        for kind, value in sorted(record_a.keys & record_b.keys):
            why = linker.shared_reason((kind, value))
            status = (
                "not linking (weak)"
                if kind not in linker.linking_kinds
                else f"shared: {why}"
                if why
                else "links"
            )
            evidence.append(KeyEvidence(kind.value, value, status))
        operator = linker.operator_links().get(frozenset((a, b)))
        golden_a, golden_b = self.golden_id(a), self.golden_id(b)
        same = golden_a == golden_b
        probability, contributions = self.graph.link_evidence(a, b)
        threshold = self.graph.layer.policy.threshold if self.graph.layer else None
        if any(e.status == "links" for e in evidence):
            summary = "linked directly by a shared strong identifier"
        elif operator is not None:
            summary = f"linked by an operator: {operator}"
        elif probability is not None and threshold is not None and probability >= threshold:
            summary = f"probabilistic match p={probability:.3f} (threshold {threshold})" + (
                "" if same else ", kept apart: their clusters name different people"
            )
        elif same:
            summary = "linked through other records of the same cluster"
        elif evidence:
            summary = "not linked: the identifiers they share do not link"
        else:
            summary = "not linked: they share no identifier"
        return Explanation(
            a, b, golden_a, golden_b, same, evidence, operator, summary, probability, contributions
        )

    # -- operator decisions ------------------------------------------------------------------

    def merge(self, ref_a: str, ref_b: str, reason: str) -> list[ClusterChange]:
        """The two are one person: their clusters merge (the older golden id survives)."""
        changes = self.graph.link(self.record(ref_a), self.record(ref_b), _reason(reason))
        self._changed()
        return changes

    def split(self, ref_a: str, ref_b: str, reason: str) -> list[ClusterChange]:
        """The two are different people (do-not-link): the strong identifiers they share
        stop linking and their cluster is rebuilt without them."""
        changes = self.graph.do_not_link(self.record(ref_a), self.record(ref_b), _reason(reason))
        self._changed()
        return changes

    def _changed(self) -> None:
        if self.after_change is not None:
            self.after_change()


def _kind(name: str) -> IdentifierKind:
    try:
        return IdentifierKind(name)
    except ValueError:
        valid = ", ".join(k.value for k in IdentifierKind)
        raise IdentityNotFound(f"{name!r} is not an identifier kind; kinds: {valid}") from None


def _reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("give a reason: it is kept in the audit trail")
    return reason.strip()


def _member(record: IdentityRecord) -> Member:
    keys = sorted((k.value, v) for k, v in record.keys)
    return Member(record.record_id, record.seen_us, keys)
