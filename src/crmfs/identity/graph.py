"""The identity graph: records, golden ids over time, and why each change happened.

``IdentityGraph`` wraps a ``DeterministicLinker`` and keeps, in a ``GraphStore`` (a SQLite
file, ``identity.db``, by default; or a PostgreSQL schema, ``identity/graph_postgres.py``):

- ``records`` and ``record_keys``: every record seen and its normalized keys;
- ``assignments``: the golden id of each record over time, as intervals
  ``[valid_from_us, valid_to_us)`` (open-ended while current), so a record's or an
  identifier's golden id can be read as of any time. Two time axes (bitemporal):
  ``valid_from_us`` is when crmfs learned the assignment (the ingestion time of the batch
  that caused it, or the operator's time), ``effective_from_us`` when it took effect in
  event time (the event time of the record that caused it; an operator decision's own time),
  never before the record's previous assignment took effect;
- ``changes``: the audit trail, one row per new cluster, join, merge and split, with the
  record that caused it, the ids retired or created, and the reason;
- ``clusters`` and ``shared_keys``: what is needed to restore the linker exactly on open;
- ``graph_state``: the graph's generation, one more per write step that changed something.

Every write (``add_all``, an operator's decision, a fit) is one step: one transaction, kept
whole or not at all. The linker's state lives in the process; a step first reloads it if
another process has written since this one read the graph (its generation moved), so
processes may take turns writing a SQLite graph; a PostgreSQL graph has one writer at a
time. Reads of "now" (golden ids, members, clusters) use the process's state, which
``refresh`` brings up to date; reads as of a time, the intervals and the changes read the
tables, so they see every committed step.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
import pyarrow as pa

from crmfs.definitions import IdentifierKind
from crmfs.errors import IdentityError
from crmfs.identity import graph_schema as sql
from crmfs.identity.clustering import LinkPolicy, Resolved, ScoredPair
from crmfs.identity.deterministic import (
    ChangeKind,
    ClusterChange,
    DeterministicLinker,
    IdentityRecord,
    Key,
)
from crmfs.identity.graph_store import GraphStore, SqliteGraphStore
from crmfs.identity.lexicon import Lexicon

if TYPE_CHECKING:  # the probabilistic layer (pandas, rapidfuzz) loads only when it is used
    from crmfs.identity.matcher import FitReport, Matches, MatchSettings
    from crmfs.identity.probabilistic import FellegiSunter
    from crmfs.identity.probabilistic_layer import ProbabilisticLayer

IntervalAxis = Literal["recorded", "effective", "current"]
MIN_RECORDS_TO_FIT = 2
T = TypeVar("T")


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at_us: int
    kind: ChangeKind
    golden_id: str
    record_id: str | None
    retired: tuple[str, ...]
    created: tuple[str, ...]
    reason: str


class IdentityGraph:
    """Golden ids that survive restarts, with their history.

    ``store`` is where the tables live: a path (a SQLite file) or a ``GraphStore``
    (``crmfs.identity.graph_backends.open_identity_graph`` opens the configured one)."""

    def __init__(
        self,
        store: Path | str | GraphStore,
        clock: Callable[[], int],
        max_records_per_key: int | None = None,
        names_must_agree: bool = True,
    ) -> None:
        self.store: GraphStore = (
            SqliteGraphStore(Path(store)) if isinstance(store, str | os.PathLike) else store
        )
        self._clock = clock
        self._lock = threading.RLock()
        self._options: dict[str, object] = {"names_must_agree": names_must_agree}
        if max_records_per_key is not None:
            self._options["max_records_per_key"] = max_records_per_key
        self._layer: ProbabilisticLayer | None = None
        self._layer_stored = False
        self._final_of: dict[str, str] = {}
        self._final_members: dict[str, set[str]] | None = None
        # Each record's open assignment (golden id, effective from), as the tables hold it.
        self._open: dict[str, tuple[str, int | None]] = {}
        self._last_seq = 0
        self._generation = 0
        self._stale = False  # memory is not what the tables hold: reload before use
        self._ahead = False  # inside a step: memory holds what it has not committed yet
        self._wrote = False
        self._reload()

    def close(self) -> None:
        self.store.close()

    @property
    def path(self) -> Path | None:
        """The SQLite file the graph is kept in (None for a graph in PostgreSQL)."""
        return self.store.path if isinstance(self.store, SqliteGraphStore) else None

    @property
    def linker(self) -> DeterministicLinker:
        """The deterministic layer as this process last read or wrote it."""
        self._fresh()
        return self._linker

    def refresh(self) -> bool:
        """Read the graph again if another process wrote to it since this one last read or
        wrote it (an operator's merge, a writer in another process); whether it did."""
        with self._lock:
            return self._catch_up()

    # -- writes --------------------------------------------------------------------------

    def add(self, record: IdentityRecord) -> list[ClusterChange]:
        """Link and store one record; the changes it made."""
        return self.add_all([record])

    def add_all(
        self,
        records: Iterable[IdentityRecord],
        at_us: int | None = None,
        event_us: Mapping[str, int] | None = None,
    ) -> list[ClusterChange]:
        """Link and store records one by one, all in one step (one transaction).

        ``at_us`` is when crmfs learns them (default: the graph's clock), ``event_us`` the
        event time of each record's first event, when the changes a record makes take effect
        in event time (default: ``at_us``). Records already known change nothing."""
        batch = list(records)
        return self._step(lambda: self._add_all(batch, at_us, event_us))

    def _add_all(
        self,
        records: list[IdentityRecord],
        at_us: int | None,
        event_us: Mapping[str, int] | None,
    ) -> list[ClusterChange]:
        now = self._clock() if at_us is None else at_us
        made: list[ClusterChange] = []
        for record in records:
            if self.linker.record(record.record_id) is not None:
                continue  # known: a redelivered record changes nothing
            shared_before = self._shared_among(record)
            det = self.linker.add(record)
            final = det
            if self.layer is not None:
                final, pairs = self.layer.add(self.linker, record, det)
                self._save_pairs(pairs, now)
            effective = now if event_us is None else event_us.get(record.record_id, now)
            newly_shared = self._shared_among(record) - shared_before
            final = [self._with_rule(change, record) for change in final]
            self._save(record, det, final, newly_shared, now, effective)
            made += final
        return made

    def _step(self, decide: Callable[[], T]) -> T:
        """One write step: one transaction, on the graph as the tables hold it (another
        process may have written since this one read it). If it fails, memory is read
        again from the tables before its next use; a store may run it again after a lost
        connection, from what the tables hold."""
        if self.store.read_only:
            raise IdentityError(
                f"the identity graph at {self.store.where} was opened read-only: open it"
                " without read_only to link records or change clusters"
            )

        def attempt() -> T:
            if self._ahead:  # an attempt before this one failed part-way
                self._stale = True
            self._catch_up()
            self._ahead, self._wrote = True, False
            result = decide()
            if self._wrote:
                self.store.write(sql.NEXT_GENERATION)
            return result

        with self._lock:
            try:
                result = self.store.step(attempt)
            except BaseException:
                # Memory ran ahead of the tables (a step refused before it began, say with
                # PostgreSQL already gone, leaves it as it was: reads go on answering).
                if self._ahead:
                    self._stale = True
                raise
            finally:
                self._ahead = False
            if self._wrote:
                self._generation += 1
            return result

    def _write(self, statement: str, params: Sequence[object] = ()) -> None:
        self._wrote = True
        self.store.write(statement, params)

    def _write_many(self, statement: str, rows: Sequence[Sequence[object]]) -> None:
        if rows:
            self._wrote = True
            self.store.write_many(statement, rows)

    def link(self, record_a: str, record_b: str, reason: str) -> list[ClusterChange]:
        """An operator's merge of two records' clusters (see ``DeterministicLinker.link``)."""
        return self._operate(lambda: self.linker.link(record_a, record_b, reason), ())

    def do_not_link(self, record_a: str, record_b: str, reason: str) -> list[ClusterChange]:
        """An operator's split (see ``DeterministicLinker.do_not_link``); the probabilistic
        layer never joins the two records' clusters again either."""

        def decide() -> list[ClusterChange]:
            changes = self.linker.do_not_link(record_a, record_b, reason)
            a, b = sorted((record_a, record_b))
            self._write(sql.UPSERT_DO_NOT_LINK, (a, b, reason, self._clock()))
            if self.layer is not None:
                self.layer.do_not_link.add(frozenset((a, b)))
                self.layer.resolver.forget_conflict(a, b)
            return changes

        return self._operate(decide, (record_a, record_b))

    def _operate(
        self, decide: Callable[[], list[ClusterChange]], about: tuple[str, ...]
    ) -> list[ClusterChange]:
        return self._step(lambda: self._apply_decision(decide, about))

    def _apply_decision(
        self, decide: Callable[[], list[ClusterChange]], about: tuple[str, ...]
    ) -> list[ClusterChange]:
        shared_before = set(self._shared_keys())
        links_before = self.linker.operator_links()
        det = decide()
        changes = det
        if self.layer is not None:
            touched = [self.linker.golden_id(r) for r in about]
            changes = self.layer.update(self.linker, det, (), None, touched)
        now = self._clock()
        links = self.linker.operator_links()
        for pair in links_before.keys() - links.keys():
            self._write(sql.DELETE_OPERATOR_LINK, sorted(pair))
        for pair in links.keys() - links_before.keys():
            a, b = sorted(pair)
            self._write(sql.INSERT_OPERATOR_LINK, (a, b, links[pair], now))
        self._save(None, det, changes, set(self._shared_keys()) - shared_before, now, now)
        return changes

    def _shared_keys(self) -> list[Key]:
        return [(s.kind, s.value) for s in self.linker.shared_keys()]

    def _shared_among(self, record: IdentityRecord) -> set[Key]:
        """The record's keys that are shared (only they can become shared by adding it)."""
        return {key for key in record.keys if self.linker.shared_reason(key) is not None}

    def _save(
        self,
        record: IdentityRecord | None,
        det: list[ClusterChange],
        final: list[ClusterChange],
        newly_shared: set[Key],
        now: int,
        effective: int,
    ) -> None:
        """Store a step: the record, keys that became shared, the deterministic clusters
        (to restore the linker), and the final changes with the assignments they made."""
        linker = self.linker
        if record is not None:
            self._write(
                sql.INSERT_RECORD,
                (record.record_id, record.seen_us, json.dumps(sorted(record.keys))),
            )
            self._write_many(
                sql.INSERT_RECORD_KEY, [(k.value, v, record.record_id) for k, v in record.keys]
            )
        for key in newly_shared:
            reason = linker.shared_reason(key) or ""
            self._write(sql.UPSERT_SHARED_KEY, (key[0].value, key[1], reason, now))
        for change in det:
            for gid in change.retired:
                self._write(sql.DELETE_CLUSTER, (gid,))
            for gid in (change.golden_id, *change.created):
                members = linker.members(gid)
                if members:
                    self._write(sql.UPSERT_CLUSTER, (gid, linker.first_record(gid)))
                    # The deterministic cluster of each record, apart from the final one
                    # (they differ once the probabilistic layer joins clusters).
                    self._write_many(sql.UPSERT_BASE_ASSIGNMENT, [(rid, gid) for rid in members])
        for change in final:
            self._last_seq += 1  # one writer at a time: the next number is ours
            seq = self._last_seq
            self._write(
                sql.INSERT_CHANGE,
                (
                    seq,
                    now,
                    change.kind.value,
                    change.golden_id,
                    change.record_id,
                    json.dumps(change.retired),
                    json.dumps(change.created),
                    change.reason,
                ),
            )
            touched = {change.golden_id, *change.created}
            for rid in {m for gid in touched for m in self._members_now(gid)}:
                self._assign(rid, self._golden_now(rid), now, seq, effective)

    def _with_rule(self, change: ClusterChange, record: IdentityRecord) -> ClusterChange:
        """A join or merge a record made, with the strong keys that linked it as its rule."""
        if change.kind not in (ChangeKind.JOINED, ChangeKind.MERGED):
            return change
        linker = self.linker
        keys = sorted(
            kind.value
            for kind, value in record.keys
            if kind in linker.linking_kinds
            and linker.shared_reason((kind, value)) is None
            and len(linker.holders((kind, value))) > 1
        )
        if not keys:
            return change
        rule = "shared " + ", ".join(dict.fromkeys(keys))
        reason = f"{rule}; {change.reason}" if change.reason else rule
        return replace(change, reason=reason)

    def _save_pairs(self, pairs: Iterable[ScoredPair], now: int) -> None:
        self._write_many(
            sql.UPSERT_LINK, [(*sorted((p.left, p.right)), p.probability, now) for p in pairs]
        )

    def _golden_now(self, record_id: str) -> str:
        self._fresh()
        if self._layer is not None:
            return self._layer.golden_id(record_id)
        if self._layer_stored:  # not rebuilt yet: the stored final clusters
            return self._final_of[record_id]
        return self._linker.golden_id(record_id)

    def _members_now(self, golden_id: str) -> frozenset[str]:
        self._fresh()
        if self._layer is not None:
            return self._layer.members(golden_id)
        if self._layer_stored:
            return frozenset(self._stored_clusters().get(golden_id, ()))
        return self._linker.members(golden_id)

    def _stored_clusters(self) -> dict[str, set[str]]:
        if self._final_members is None:
            found: dict[str, set[str]] = {}
            for rid, gid in self._final_of.items():
                found.setdefault(gid, set()).add(rid)
            self._final_members = found
        return self._final_members

    def _assign(self, record_id: str, golden_id: str, now: int, seq: int, effective: int) -> None:
        """Close the record's open assignment, if it names another golden id, and open one
        naming ``golden_id`` (the open ones are kept in memory: no read per record)."""
        current = self._open.get(record_id)
        if current is not None and current[0] == golden_id:
            return
        if current is not None:
            self._write(sql.CLOSE_ASSIGNMENT, (now, record_id))
            effective = max(effective, current[1] if current[1] is not None else now)
        self._write(sql.INSERT_ASSIGNMENT, (record_id, golden_id, now, seq, effective))
        self._open[record_id] = (golden_id, effective)

    # -- reads ---------------------------------------------------------------------------

    def golden_id(self, record_id: str, at_us: int | None = None) -> str | None:
        """The record's golden id now, or as of ``at_us``; None if unknown then."""
        if at_us is None:
            return self._golden_now(record_id) if self.linker.record(record_id) else None
        rows = self.store.rows(sql.GOLDEN_ID_AT, (record_id, at_us, at_us))
        return str(rows[0][0]) if rows else None

    def record_of_key(self, key: Key) -> str | None:
        """The record an identifier (a normalized key) stands for now: the first of the
        records carrying it (they are one cluster unless it is shared, and a shared
        identifier stands for no one)."""
        holders = self.linker.holders(key)
        if not holders or self.linker.shared_reason(key) is not None:
            return None
        return min(holders)

    def golden_id_of(
        self, kind: IdentifierKind, value: str, at_us: int | None = None
    ) -> str | None:
        """The golden id an identifier (a normalized key) stands for, now or as of ``at_us``.

        None when no record carries it, or when it is shared (it names several people)."""
        if at_us is None:
            record = self.record_of_key((kind, value))
            return None if record is None else self._golden_now(record)
        if self.store.rows(sql.SHARED_AT, (kind.value, value, at_us)):
            return None
        rows = self.store.rows(sql.GOLDEN_ID_OF_KEY_AT, (kind.value, value, at_us, at_us))
        return str(rows[0][0]) if rows else None

    def members(self, golden_id: str, at_us: int | None = None) -> frozenset[str]:
        """The records under ``golden_id`` now, or as of ``at_us``."""
        if at_us is None:
            return self._members_now(golden_id)
        rows = self.store.rows(sql.MEMBERS_AT, (golden_id, at_us, at_us))
        return frozenset(str(r[0]) for r in rows)

    def history(self, golden_id: str) -> list[AuditEntry]:
        """Every change that made, joined, merged, retired or split ``golden_id``."""
        pattern = f'%"{golden_id}"%'
        return self._entries(sql.HISTORY, (golden_id, pattern, pattern))

    def _entries(self, statement: str, params: tuple[object, ...]) -> list[AuditEntry]:
        return [
            AuditEntry(
                int(r[0]),
                int(r[1]),
                ChangeKind(r[2]),
                str(r[3]),
                r[4],
                tuple(json.loads(r[5])),
                tuple(json.loads(r[6])),
                str(r[7]),
            )
            for r in self.store.rows(statement, params)
        ]

    def clusters(self) -> dict[str, frozenset[str]]:
        """Every golden id now and its records."""
        self._fresh()
        if self._layer is not None:
            return self._layer.resolver.clusters()
        if self._layer_stored:
            return {gid: frozenset(members) for gid, members in self._stored_clusters().items()}
        return self._linker.clusters()

    def fit_matcher(
        self, policy: LinkPolicy | None = None, settings: MatchSettings | None = None
    ) -> FitReport:
        """Fit the probabilistic layer on the records seen (m from the pairs the strong keys
        link, u from random pairs; no labels), store it, and re-resolve every record with
        it: clusters it joins are merged (audited, followed online). From then on each new
        record is scored on arrival. Fitting again replaces the model."""
        return self._step(lambda: self._fit(policy, settings))

    def _fit(self, policy: LinkPolicy | None, settings: MatchSettings | None) -> FitReport:
        records = self._records_in_order()
        if len(records) < MIN_RECORDS_TO_FIT:
            raise IdentityError(
                f"fitting the probabilistic layer needs at least {MIN_RECORDS_TO_FIT}"
                f" identity records, the graph has {len(records)}: ingest sources that"
                " declare identifiers first"
            )
        from crmfs.identity.match_columns import DEFAULT_POLICY, DEFAULT_SETTINGS
        from crmfs.identity.matcher import ProbabilisticMatcher

        policy, settings = policy or DEFAULT_POLICY, settings or DEFAULT_SETTINGS
        matcher = ProbabilisticMatcher(settings)
        lexicon = Lexicon.learn(records)
        columns = _match_columns(records, lexicon)
        position = {r.record_id: i for i, r in enumerate(records)}
        known = np.array(
            [
                (position[a], position[b])
                for members in self.linker.clusters().values()
                for a in members
                for b in members
                if position[a] < position[b]
            ],
            dtype=np.int64,
        ).reshape(-1, 2)
        report, scored = matcher.fit_and_score(columns, known_matches=known)
        assert matcher.model is not None
        self._install(matcher.model, lexicon, policy, settings, records, scored)
        return report

    def use_model(
        self,
        model: FellegiSunter,
        policy: LinkPolicy | None = None,
        settings: MatchSettings | None = None,
        lexicon: Lexicon | None = None,
    ) -> None:
        """Take a fitted model and lexicon (another graph's, say) and re-resolve every
        record with them; without ``lexicon``, one learned from this graph's records."""
        from crmfs.identity.match_columns import DEFAULT_POLICY, DEFAULT_SETTINGS
        from crmfs.identity.matcher import Matches, ProbabilisticMatcher

        chosen_policy, chosen_settings = policy or DEFAULT_POLICY, settings or DEFAULT_SETTINGS

        def install() -> None:
            records = self._records_in_order()
            learned = lexicon or Lexicon.learn(records)
            scorer = ProbabilisticMatcher(replace(chosen_settings, threshold=1e-12), model=model)
            scored = (
                scorer.link(_match_columns(records, learned))
                if records
                else Matches(np.zeros((0, 2), np.int64), np.zeros(0))
            )
            self._install(model, learned, chosen_policy, chosen_settings, records, scored)

        self._step(install)

    def _install(
        self,
        model: FellegiSunter,
        lexicon: Lexicon,
        policy: LinkPolicy,
        settings: MatchSettings,
        records: list[IdentityRecord],
        scored: Matches,
    ) -> None:
        from crmfs.identity.probabilistic_layer import ProbabilisticLayer, final_changes

        now = self._clock()
        before = {
            gid: Resolved(gid, members, frozenset({gid}))
            for gid, members in self.clusters().items()
        }
        ids = [r.record_id for r in records]
        pairs = [
            ScoredPair(ids[i], ids[j], float(p))
            for (i, j), p in zip(scored.pairs.tolist(), scored.probabilities, strict=True)
        ]
        layer = ProbabilisticLayer(model, settings, policy, lexicon)
        layer.do_not_link = self._do_not_link_pairs()
        layer.restore(self.linker, records, pairs)
        self._write(sql.DELETE_LINKS)
        self._save_pairs(pairs, now)
        self._write(
            sql.UPSERT_MODEL,
            (model.to_json(), policy.threshold, policy.floor, now, lexicon.to_json()),
        )
        self._layer, self._layer_stored = layer, True
        after = {gid: layer.resolver.cluster(gid) for gid in layer.resolver.clusters()}
        changes = final_changes(before, after, None, "probabilistic matching (re)fitted")
        self._save(None, [], changes, set(), now, now)

    def _do_not_link_pairs(self) -> set[frozenset[str]]:
        return {frozenset((str(a), str(b))) for a, b in self.store.rows(sql.DO_NOT_LINK)}

    def _records_in_order(self) -> list[IdentityRecord]:
        found = [self._linker.record(str(r[0])) for r in self.store.rows(sql.RECORD_IDS)]
        return [r for r in found if r is not None]

    def review_pairs(self, lower: float, limit: int = 100) -> list[tuple[str, str, float]]:
        """Scored pairs for a person to decide: in the review band (``lower`` <= p < the
        auto-link threshold), or above it but kept apart (their clusters conflict), whose
        records are still in different clusters; best first."""
        self._fresh()
        if not self._layer_stored:
            return []
        found = []
        for a, b, p in self.store.rows(sql.REVIEW_LINKS, (lower,)):
            if self._golden_now(str(a)) != self._golden_now(str(b)):
                found.append((str(a), str(b), float(p)))
                if len(found) >= limit:
                    break
        return found

    def link_evidence(
        self, record_a: str, record_b: str
    ) -> tuple[float | None, dict[str, float] | None]:
        """The probabilistic layer's score of a pair (if it scored it) and each comparison's
        contribution (log2 of m/u; None before a model is fitted)."""
        layer = self.layer
        if layer is None:
            return None, None
        rows = self.store.rows(sql.LINK_PROBABILITY, sorted((record_a, record_b)))
        contributions = layer.matcher.explain(layer.columns(record_a), layer.columns(record_b))
        return (float(rows[0][0]) if rows else None), contributions

    def changes_after(self, seq: int) -> list[AuditEntry]:
        """The audit trail past change ``seq``, in order (what a follower has not applied)."""
        return self._entries(sql.CHANGES_AFTER, (seq,))

    def intervals(self, axis: IntervalAxis, at_us: int | None = None) -> pa.Table:
        """Every record's golden ids over time: ``record_id, golden_id, from_us, to_us``.

        ``axis``: ``"recorded"`` (as crmfs learned them: what online serving used),
        ``"effective"`` (as they took effect in event time), or ``"current"`` (one interval
        per record: its golden id now, or as of ``at_us`` on the recorded axis). A record's
        first interval starts at ``UNBOUNDED_PAST``: its events can only be counted from the
        time they happened (or were ingested), which is never before the record existed.
        Open intervals end at ``UNBOUNDED_FUTURE``.
        """
        if axis == "current":
            query = sql.CURRENT_AT if at_us is not None else sql.CURRENT
            params: tuple[int, ...] = (at_us, at_us) if at_us is not None else ()
        elif axis in ("recorded", "effective"):
            query = sql.RECORDED if axis == "recorded" else sql.EFFECTIVE
            params = ()
        else:
            raise ValueError(f"axis must be recorded, effective or current, not {axis!r}")
        rows = self.store.rows(query, params)
        columns: list[tuple[object, ...]] = list(zip(*rows, strict=True)) or [(), (), (), ()]
        return pa.table(
            {
                "record_id": pa.array(columns[0], pa.string()),
                "golden_id": pa.array(columns[1], pa.string()),
                "from_us": pa.array(columns[2], pa.int64()),
                "to_us": pa.array(columns[3], pa.int64()),
            }
        )

    # -- loading -------------------------------------------------------------------------

    def _fresh(self) -> None:
        """Memory as the tables hold it: read again after a step that failed."""
        if self._stale and not self._ahead:
            self._reload()

    def _reload(self) -> None:
        with self._lock:
            self.store.snapshot(self._read_state)
            self._stale = False

    def _catch_up(self) -> bool:
        """Read the graph again if it is stale or another process wrote since; whether."""
        generation = int(self.store.rows(sql.GENERATION)[0][0])
        if not self._stale and generation == self._generation:
            return False
        self._reload()
        return True

    def _read_state(self) -> None:
        """What restores the graph: the linker, the golden ids now, the generation. All or
        nothing: if a read fails, memory stays as it was."""
        rows = self.store.rows
        records = [
            IdentityRecord(
                str(rid),
                int(seen),
                frozenset((IdentifierKind(k), str(v)) for k, v in json.loads(keys)),
            )
            for rid, seen, keys in rows(sql.RECORDS)
        ]
        open_now = {
            str(rid): (str(gid), None if eff is None else int(eff))
            for rid, gid, eff in rows(sql.OPEN_ASSIGNMENTS)
        }
        cluster_of = {rid: gid for rid, (gid, _) in open_now.items()}
        final_of = dict(cluster_of)  # the golden ids now (final clusters)
        # The deterministic clusters: kept apart from the final ones since the probabilistic
        # layer exists; graphs written before keep only the final ones, which were the same.
        cluster_of.update((str(rid), str(gid)) for rid, gid in rows(sql.BASE_ASSIGNMENTS))
        first_of = {str(g): str(r) for g, r in rows(sql.CLUSTERS)}
        shared = {(IdentifierKind(k), str(v)): str(why) for k, v, why in rows(sql.SHARED_KEYS)}
        operator_links = {
            frozenset((str(a), str(b))): str(why) for a, b, why in rows(sql.OPERATOR_LINKS)
        }
        layer_stored = bool(rows(sql.HAS_MODEL))
        last_seq = int(rows(sql.LAST_SEQ)[0][0])
        generation = int(rows(sql.GENERATION)[0][0])
        self._linker = DeterministicLinker.restore(
            records, cluster_of, first_of, shared, operator_links, **self._options
        )
        self._open, self._final_of, self._final_members = open_now, final_of, None
        self._layer, self._layer_stored = None, layer_stored
        self._last_seq, self._generation = last_seq, generation

    @property
    def layer(self) -> ProbabilisticLayer | None:
        """The probabilistic layer, once a model is fitted; rebuilt from the tables when
        first needed (reads of golden ids use the stored assignments meanwhile)."""
        self._fresh()
        if self._layer is None and self._layer_stored:
            with self._lock:
                if self._layer is None and self._layer_stored:
                    self._layer = self.store.snapshot(self._read_layer)
        return self._layer

    def _read_layer(self) -> ProbabilisticLayer | None:
        """The probabilistic layer as it was: the fitted model, the stored pairs, and
        the do-not-link decisions (None until a model is fitted), read on the state the
        linker was read on (a reader behind a writer reads that state again first)."""
        if not self._ahead and int(self.store.rows(sql.GENERATION)[0][0]) != self._generation:
            self._read_state()
        found = self.store.rows(sql.MODEL)
        if not found:
            return None
        from crmfs.identity.probabilistic import FellegiSunter
        from crmfs.identity.probabilistic_layer import ProbabilisticLayer

        model, threshold, floor, lexicon = found[0]
        layer = ProbabilisticLayer(
            FellegiSunter.from_json(model),
            policy=LinkPolicy(float(threshold), float(floor)),
            lexicon=Lexicon.from_json(lexicon),
        )
        layer.do_not_link = self._do_not_link_pairs()
        pairs = [ScoredPair(str(a), str(b), float(p)) for a, b, p in self.store.rows(sql.LINKS)]
        layer.restore(self._linker, self._records_in_order(), pairs)
        return layer


def _match_columns(records: list[IdentityRecord], lexicon: Lexicon) -> dict[str, list[str | None]]:
    from crmfs.identity.match_columns import MATCH_COLUMNS, columns_of

    found = [columns_of(r, lexicon) for r in records]
    return {c: [cols[c] for cols in found] for c in MATCH_COLUMNS}
