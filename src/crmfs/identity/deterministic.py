"""The deterministic layer: records sharing a strong key are one cluster with a golden id.

Records arrive one at a time (``add``) or as a first load (``link_all``); both give the same
clusters whatever the order, because a cluster is a connected component of "shares a usable
key". The rules:

- **Linking keys.** A record's normalized identifiers of the linking kinds (by default the
  strong ones: email, phone, CRM and marketing ids, external and cookie ids) link it to every
  record carrying the same key.
- **Shared keys.** A key stops linking when more than ``max_records_per_key`` records carry
  it, or (``names_must_agree``) when two of its records name different people: last names
  that are not near-equal, or first names that are neither near-equal nor a nickname of one
  another (``Bob`` and ``Robert`` agree). That is what a household phone or ``info@company``
  looks like. The key is reported (``shared_keys``, with the reason) and the clusters it had
  joined are rebuilt without it (a split with that reason). Both tests depend only on the set
  of records carrying the key, so the order they arrive in does not matter.
- **Golden ids.** A new cluster takes an id made from its first record's id (a hash, so the
  same record makes the same id in any run). It keeps that id while records join it. On a
  merge the cluster created first (oldest first record by ``seen_us``, then record id)
  survives and the others' ids retire. On a split, the part holding the cluster's first
  record keeps the id; each other part takes the id of its own oldest record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rapidfuzz.distance import OSA, JaroWinkler

from crmfs.definitions import IdentifierKind
from crmfs.identity.normalize import first_name_forms, first_name_variants

Key = tuple[IdentifierKind, str]

DEFAULT_MAX_RECORDS_PER_KEY = 10


@dataclass(frozen=True)
class IdentityRecord:
    """One source record's identity: its id, when it was first seen, its normalized keys."""

    record_id: str
    seen_us: int
    keys: frozenset[Key]


class ChangeKind(StrEnum):
    NEW = "new"
    JOINED = "joined"
    MERGED = "merged"
    SPLIT = "split"


@dataclass(frozen=True)
class ClusterChange:
    """What one step did to the golden ids, and why."""

    kind: ChangeKind
    golden_id: str
    record_id: str | None = None  # the record that caused it, if one did
    retired: tuple[str, ...] = ()  # merged: the ids folded into ``golden_id``
    created: tuple[str, ...] = ()  # split: the ids of the parts split off ``golden_id``
    reason: str = ""


@dataclass(frozen=True)
class SharedKey:
    kind: IdentifierKind
    value: str
    records: int
    reason: str


_NEAR_LAST_NAME = 0.9
_NEAR_FIRST_NAME = 0.85


def names_conflict(a: IdentityRecord, b: IdentityRecord) -> bool:
    """Do the two records name different people (see the module's doc)? Missing names
    conflict with nothing."""
    last_a, last_b = _name(a, IdentifierKind.LAST_NAME), _name(b, IdentifierKind.LAST_NAME)
    if last_a and last_b and JaroWinkler.normalized_similarity(last_a, last_b) < _NEAR_LAST_NAME:
        return True
    first_a, first_b = _name(a, IdentifierKind.FIRST_NAME), _name(b, IdentifierKind.FIRST_NAME)
    if not (first_a and first_b):
        return False
    forms_a, forms_b = first_name_forms(first_a), first_name_forms(first_b)
    if forms_a & forms_b:
        return False
    return JaroWinkler.normalized_similarity(first_a, first_b) < _NEAR_FIRST_NAME


def plain_names_conflict(
    first_a: str | None, last_a: str | None, first_b: str | None, last_b: str | None
) -> bool:
    """``names_conflict`` for plain normalized names, a little more tolerant of typing: two
    first names also agree when a name or nickname of one is near-equal to a name or
    nickname of the other (``kaherine``, a typo of Katherine, and ``kathy``; ``frd`` and
    ``frederick``, by ``fred``). Missing names conflict with nothing.

    >>> plain_names_conflict("bob", "smith", "robert", "smith")
    False
    >>> plain_names_conflict("frd", "kelly", "frederick", "kelly")
    False
    >>> plain_names_conflict("anna", "smith", "anna", "jones")
    True
    """
    if last_a and last_b and _last_names_differ(last_a, last_b):
        return True
    if not (first_a and first_b):
        return False
    if len(first_a) == 1 or len(first_b) == 1:  # an initial (``j.smith@``)
        return first_a[0] != first_b[0]
    forms_a, forms_b = first_name_variants(first_a), first_name_variants(first_b)
    if forms_a & forms_b:
        return False
    return all(
        JaroWinkler.normalized_similarity(a, b) < _NEAR_FIRST_NAME for a in forms_a for b in forms_b
    )


def _last_names_differ(a: str, b: str) -> bool:
    """Not near-equal, and not one slip apart (``rhman``, ``rahman``: a short name with a
    letter dropped is far by Jaro-Winkler)."""
    return JaroWinkler.normalized_similarity(a, b) < _NEAR_LAST_NAME and OSA.distance(a, b) > 1


def _name(record: IdentityRecord, kind: IdentifierKind) -> str | None:
    return min((v for k, v in record.keys if k is kind), default=None)


def golden_id_for(record_id: str) -> str:
    """The golden id a cluster takes from the record that creates it."""
    return "g" + hashlib.blake2b(record_id.encode(), digest_size=8).hexdigest()


@dataclass
class DeterministicLinker:
    """Clusters of records linked by exact matches of normalized strong keys."""

    linking_kinds: frozenset[IdentifierKind] = field(
        default_factory=lambda: frozenset(k for k in IdentifierKind if k.is_strong)
    )
    max_records_per_key: int = DEFAULT_MAX_RECORDS_PER_KEY
    names_must_agree: bool = True
    _records: dict[str, IdentityRecord] = field(default_factory=dict, init=False)
    _key_records: dict[Key, set[str]] = field(default_factory=dict, init=False)
    _cluster_of: dict[str, str] = field(default_factory=dict, init=False)
    _members: dict[str, set[str]] = field(default_factory=dict, init=False)
    _first: dict[str, IdentityRecord] = field(default_factory=dict, init=False)
    _shared: dict[Key, str] = field(default_factory=dict, init=False)  # key -> why
    # Links an operator made between two records: edges like a shared key, never "shared".
    _operator_links: dict[frozenset[str], str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.max_records_per_key < 1:
            raise ValueError(f"max_records_per_key must be >= 1, not {self.max_records_per_key}")

    @classmethod
    def restore(
        cls,
        records: Iterable[IdentityRecord],
        cluster_of: Mapping[str, str],
        first_of: Mapping[str, str],
        shared: Mapping[Key, str],
        operator_links: Mapping[frozenset[str], str] | None = None,
        **options: Any,
    ) -> DeterministicLinker:
        """A linker in a saved state: the records, each one's golden id, each cluster's
        first record and the shared keys (as ``IdentityGraph`` keeps them)."""
        linker = cls(**options)
        for record in records:
            linker._records[record.record_id] = record
            for key in linker._linking_keys(record):
                linker._key_records.setdefault(key, set()).add(record.record_id)
        for rid, gid in cluster_of.items():
            linker._cluster_of[rid] = gid
            linker._members.setdefault(gid, set()).add(rid)
        linker._first = {gid: linker._records[rid] for gid, rid in first_of.items()}
        linker._shared = dict(shared)
        linker._operator_links = dict(operator_links or {})
        return linker

    # -- reads ---------------------------------------------------------------------------

    def record(self, record_id: str) -> IdentityRecord | None:
        return self._records.get(record_id)

    def first_record(self, golden_id: str) -> str:
        return self._first[golden_id].record_id

    def created(self, golden_id: str) -> tuple[int, str]:
        """When cluster ``golden_id`` was created: its first record's ``seen_us`` and id, the
        order in which merges keep the oldest id (``BaseCluster.created`` for clustering)."""
        return self._age(golden_id)

    def holders(self, key: Key) -> frozenset[str]:
        """The records carrying ``key``."""
        return frozenset(self._key_records.get(key, ()))

    def shared_reason(self, key: Key) -> str | None:
        return self._shared.get(key)

    def golden_id(self, record_id: str) -> str:
        return self._cluster_of[record_id]

    def members(self, golden_id: str) -> frozenset[str]:
        return frozenset(self._members.get(golden_id, ()))

    def clusters(self) -> dict[str, frozenset[str]]:
        return {gid: frozenset(members) for gid, members in self._members.items()}

    def shared_keys(self) -> list[SharedKey]:
        """Keys that stopped linking because too many records carry them, most used first."""
        found = [
            SharedKey(k, v, len(self._key_records[(k, v)]), why)
            for (k, v), why in self._shared.items()
        ]
        return sorted(found, key=lambda s: (-s.records, s.kind.value, s.value))

    # -- writes --------------------------------------------------------------------------

    def add(self, record: IdentityRecord) -> list[ClusterChange]:
        """Link one record; the changes it made (the first one names its cluster)."""
        if record.record_id in self._records:
            return []  # a redelivered record changes nothing
        self._records[record.record_id] = record
        keys = self._linking_keys(record)
        newly_shared = []
        for key in keys:
            holders = self._key_records.setdefault(key, set())
            why = None if key in self._shared else self._why_shared(record, holders)
            holders.add(record.record_id)
            if why is not None:
                self._shared[key] = why
                newly_shared.append(key)
        linked = {
            self._cluster_of[other]
            for key in keys
            if key not in self._shared
            for other in self._key_records[key]
            if other != record.record_id
        }
        changes = [self._place(record, linked)]
        for key in newly_shared:
            changes += self._split_on(key)
        return changes

    def link_all(self, records: Iterable[IdentityRecord]) -> list[ClusterChange]:
        """A first load: the records in age order, shared keys found before any link."""
        ordered = sorted(records, key=lambda r: (r.seen_us, r.record_id))
        counts: dict[Key, set[str]] = {}
        for record in ordered:
            for key in self._linking_keys(record):
                counts.setdefault(key, set()).add(record.record_id)
        changes = []
        by_id = {r.record_id: r for r in ordered} | self._records
        for key, holders in counts.items():
            earlier = self._key_records.get(key, set())
            why = None if key in self._shared else self._why_shared_set(holders | earlier, by_id)
            if why is not None:
                self._shared[key] = why
                if earlier:  # clusters linked through it before this load
                    changes += self._split_on(key)
        for record in ordered:
            changes += self.add(record)
        return changes

    # -- operator decisions --------------------------------------------------------------

    def link(self, record_a: str, record_b: str, reason: str) -> list[ClusterChange]:
        """An operator's merge: the two records are one person, whatever their keys say."""
        self._known(record_a, record_b)
        self._operator_links[frozenset((record_a, record_b))] = reason
        a, b = self._cluster_of[record_a], self._cluster_of[record_b]
        if a == b:
            return []
        survivor, retired = (a, b) if self._age(a) <= self._age(b) else (b, a)
        for member in self._members.pop(retired):
            self._cluster_of[member] = survivor
            self._members[survivor].add(member)
        del self._first[retired]
        return [
            ClusterChange(
                ChangeKind.MERGED, survivor, retired=(retired,), reason=f"operator: {reason}"
            )
        ]

    def do_not_link(self, record_a: str, record_b: str, reason: str) -> list[ClusterChange]:
        """An operator's split: the two records are different people, so the strong keys
        they share stop linking (each is reported as shared, with ``reason``), and their
        cluster is rebuilt without them. Records still connected another way (through
        other records' keys, or an operator's link) stay together: the result then shows no
        split, and ``golden_id`` tells which keys to look at next."""
        self._known(record_a, record_b)
        common = set(self._linking_keys(self._records[record_a])) & set(
            self._linking_keys(self._records[record_b])
        )
        self._operator_links.pop(frozenset((record_a, record_b)), None)
        changes = []
        for key in sorted(common):
            if key not in self._shared:
                self._shared[key] = f"do not link: {reason}"
                changes += self._split_on(key)
        if not common and self._cluster_of[record_a] == self._cluster_of[record_b]:
            changes += self._rebuild(self._cluster_of[record_a], f"do not link: {reason}")
        return changes

    def operator_links(self) -> dict[frozenset[str], str]:
        return dict(self._operator_links)

    def _known(self, *record_ids: str) -> None:
        for rid in record_ids:
            if rid not in self._records:
                raise KeyError(f"no identity record {rid!r}")

    # -- internals -----------------------------------------------------------------------

    def _why_shared(self, record: IdentityRecord, holders: set[str]) -> str | None:
        """Why the key stops linking once ``record`` joins its ``holders``, if it does."""
        if len(holders) + 1 > self.max_records_per_key:
            return f"carried by more than {self.max_records_per_key} records"
        if self.names_must_agree and any(
            names_conflict(record, self._records[other]) for other in holders
        ):
            return "carried by records naming different people"
        return None

    def _why_shared_set(self, holders: set[str], by_id: dict[str, IdentityRecord]) -> str | None:
        if len(holders) > self.max_records_per_key:
            return f"carried by more than {self.max_records_per_key} records"
        if self.names_must_agree:
            records = [by_id[r] for r in sorted(holders)]
            for i, a in enumerate(records):
                if any(names_conflict(a, b) for b in records[i + 1 :]):
                    return "carried by records naming different people"
        return None

    def _linking_keys(self, record: IdentityRecord) -> list[Key]:
        return sorted(k for k in record.keys if k[0] in self.linking_kinds)

    def _place(self, record: IdentityRecord, linked: set[str]) -> ClusterChange:
        rid = record.record_id
        if not linked:
            gid = golden_id_for(rid)
            self._members[gid] = {rid}
            self._first[gid] = record
            self._cluster_of[rid] = gid
            return ClusterChange(ChangeKind.NEW, gid, rid)
        survivor = min(linked, key=self._age)
        self._members[survivor].add(rid)
        self._cluster_of[rid] = survivor
        retired = tuple(sorted(linked - {survivor}))
        for gid in retired:
            for member in self._members.pop(gid):
                self._cluster_of[member] = survivor
                self._members[survivor].add(member)
            del self._first[gid]
        if retired:
            reason = "a record carries keys of several clusters"
            return ClusterChange(ChangeKind.MERGED, survivor, rid, retired=retired, reason=reason)
        return ClusterChange(ChangeKind.JOINED, survivor, rid)

    def _age(self, golden_id: str) -> tuple[int, str]:
        first = self._first[golden_id]
        return (first.seen_us, first.record_id)

    def _split_on(self, key: Key) -> list[ClusterChange]:
        """Rebuild the clusters holding ``key`` without it (and without other shared keys)."""
        affected = sorted({self._cluster_of[r] for r in self._key_records[key]})
        reason = f"shared {key[0].value} key, {self._shared[key]}"
        return [change for gid in affected for change in self._rebuild(gid, reason)]

    def _rebuild(self, gid: str, reason: str) -> list[ClusterChange]:
        """Split cluster ``gid`` into its connected parts, if it has come apart."""
        parts = self._components(self._members[gid])
        if len(parts) == 1:
            return []
        first = self._first[gid].record_id
        created = []
        for part in parts:
            if first in part:
                self._members[gid] = part
                continue
            oldest = min((self._records[r] for r in part), key=lambda r: (r.seen_us, r.record_id))
            new_id = golden_id_for(oldest.record_id)
            self._members[new_id] = part
            self._first[new_id] = oldest
            for member in part:
                self._cluster_of[member] = new_id
            created.append(new_id)
        # In id order: the parts come out of sets, whose order changes with the hash seed.
        created.sort()
        return [ClusterChange(ChangeKind.SPLIT, gid, created=tuple(created), reason=reason)]

    def _components(self, records: set[str]) -> list[set[str]]:
        """Connected components of ``records`` over their usable keys."""
        parent = {r: r for r in records}

        def find(r: str) -> str:
            while parent[r] != r:
                parent[r] = parent[parent[r]]
                r = parent[r]
            return r

        by_key: dict[Key, str] = {}
        for rid in sorted(records):
            for key in self._linking_keys(self._records[rid]):
                if key in self._shared:
                    continue
                other = by_key.setdefault(key, rid)
                parent[find(rid)] = find(other)
        for pair in self._operator_links:
            a, b = sorted(pair)
            if a in parent and b in parent:
                parent[find(a)] = find(b)
        groups: dict[str, set[str]] = {}
        for rid in records:
            groups.setdefault(find(rid), set()).add(rid)
        return list(groups.values())
