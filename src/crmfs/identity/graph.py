"""The identity graph on disk: records, golden ids over time, and why each change happened.

``IdentityGraph`` wraps a ``DeterministicLinker`` and keeps, in SQLite (``identity.db``):

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
- ``clusters`` and ``shared_keys``: what is needed to restore the linker exactly on open.

Every ``add`` is one SQLite transaction: a crash loses the record whole or keeps it whole.
One process writes a graph at a time (the linker's state lives in that process).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa

from crmfs.definitions import IdentifierKind
from crmfs.errors import IdentityError, StorageError
from crmfs.identity.clustering import LinkPolicy, Resolved, ScoredPair
from crmfs.identity.deterministic import (
    ChangeKind,
    ClusterChange,
    DeterministicLinker,
    IdentityRecord,
    Key,
)
from crmfs.identity.graph_schema import (
    CURRENT,
    CURRENT_AT,
    EFFECTIVE,
    RECORDED,
    SCHEMA,
    add_new_columns,
)
from crmfs.identity.lexicon import Lexicon
from crmfs.storage.sqlite_tx import write_transaction

if TYPE_CHECKING:  # the probabilistic layer (pandas, rapidfuzz) loads only when it is used
    from crmfs.identity.matcher import FitReport, Matches, MatchSettings
    from crmfs.identity.probabilistic import FellegiSunter
    from crmfs.identity.probabilistic_layer import ProbabilisticLayer

IntervalAxis = Literal["recorded", "effective", "current"]
MIN_RECORDS_TO_FIT = 2


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
    """Golden ids that survive restarts, with their history."""

    def __init__(
        self,
        path: Path,
        clock: Callable[[], int],
        max_records_per_key: int | None = None,
        names_must_agree: bool = True,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            add_new_columns(self._db)
        except sqlite3.Error as exc:
            raise StorageError(f"identity graph {self.path}: {exc}") from exc
        self._options: dict[str, object] = {"names_must_agree": names_must_agree}
        if max_records_per_key is not None:
            self._options["max_records_per_key"] = max_records_per_key
        self._layer: ProbabilisticLayer | None = None
        self._layer_stored = False
        self._final_of: dict[str, str] = {}
        self._final_members: dict[str, set[str]] | None = None
        self.linker = self._load()

    def close(self) -> None:
        self._db.close()

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
        """Link and store records one by one, all in one transaction.

        ``at_us`` is when crmfs learns them (default: the graph's clock), ``event_us`` the
        event time of each record's first event, when the changes a record makes take effect
        in event time (default: ``at_us``). Records already known change nothing."""
        with self._writing():
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

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction; if it fails, the linker goes back to what the disk holds."""
        with self._lock:
            try:
                with write_transaction(self._db, self._lock, f"identity graph {self.path}"):
                    yield
            except BaseException:
                self.linker = self._load()
                raise

    def link(self, record_a: str, record_b: str, reason: str) -> list[ClusterChange]:
        """An operator's merge of two records' clusters (see ``DeterministicLinker.link``)."""
        return self._operate(lambda: self.linker.link(record_a, record_b, reason), ())

    def do_not_link(self, record_a: str, record_b: str, reason: str) -> list[ClusterChange]:
        """An operator's split (see ``DeterministicLinker.do_not_link``); the probabilistic
        layer never joins the two records' clusters again either."""

        def decide() -> list[ClusterChange]:
            changes = self.linker.do_not_link(record_a, record_b, reason)
            a, b = sorted((record_a, record_b))
            self._db.execute(
                "INSERT OR REPLACE INTO do_not_link VALUES (?, ?, ?, ?)",
                (a, b, reason, self._clock()),
            )
            if self.layer is not None:
                self.layer.do_not_link.add(frozenset((a, b)))
                self.layer.resolver.forget_conflict(a, b)
            return changes

        return self._operate(decide, (record_a, record_b))

    def _operate(
        self, decide: Callable[[], list[ClusterChange]], about: tuple[str, ...]
    ) -> list[ClusterChange]:
        with self._writing():
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
                a, b = sorted(pair)
                self._db.execute(
                    "DELETE FROM operator_links WHERE record_a = ? AND record_b = ?", (a, b)
                )
            for pair in links.keys() - links_before.keys():
                a, b = sorted(pair)
                self._db.execute(
                    "INSERT INTO operator_links VALUES (?, ?, ?, ?)", (a, b, links[pair], now)
                )
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
        db = self._db
        if record is not None:
            db.execute(
                "INSERT INTO records VALUES (?, ?, ?)",
                (record.record_id, record.seen_us, json.dumps(sorted(record.keys))),
            )
            db.executemany(
                "INSERT OR IGNORE INTO record_keys VALUES (?, ?, ?)",
                [(k.value, v, record.record_id) for k, v in record.keys],
            )
        for key in newly_shared:
            reason = self.linker.shared_reason(key) or ""
            db.execute(
                "INSERT OR REPLACE INTO shared_keys VALUES (?, ?, ?, ?)",
                (key[0].value, key[1], reason, now),
            )
        for change in det:
            for gid in change.retired:
                db.execute("DELETE FROM clusters WHERE golden_id = ?", (gid,))
            for gid in (change.golden_id, *change.created):
                members = self.linker.members(gid)
                if members:
                    db.execute(
                        "INSERT OR REPLACE INTO clusters VALUES (?, ?)",
                        (gid, self.linker.first_record(gid)),
                    )
                    # The deterministic cluster of each record, apart from the final one
                    # (they differ once the probabilistic layer joins clusters).
                    db.executemany(
                        "INSERT OR REPLACE INTO base_assignments VALUES (?, ?)",
                        [(rid, gid) for rid in members],
                    )
        for change in final:
            seq = db.execute(
                "INSERT INTO changes (at_us, kind, golden_id, record_id, retired, created, reason)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    now,
                    change.kind.value,
                    change.golden_id,
                    change.record_id,
                    json.dumps(change.retired),
                    json.dumps(change.created),
                    change.reason,
                ),
            ).lastrowid
            assert seq is not None
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
        self._db.executemany(
            "INSERT OR REPLACE INTO links VALUES (?, ?, ?, ?)",
            [(*sorted((p.left, p.right)), p.probability, now) for p in pairs],
        )

    def _golden_now(self, record_id: str) -> str:
        if self._layer is not None:
            return self._layer.golden_id(record_id)
        if self._layer_stored:  # not rebuilt yet: the stored final clusters
            return self._final_of[record_id]
        return self.linker.golden_id(record_id)

    def _members_now(self, golden_id: str) -> frozenset[str]:
        if self._layer is not None:
            return self._layer.members(golden_id)
        if self._layer_stored:
            return frozenset(self._stored_clusters().get(golden_id, ()))
        return self.linker.members(golden_id)

    def _stored_clusters(self) -> dict[str, set[str]]:
        if self._final_members is None:
            found: dict[str, set[str]] = {}
            for rid, gid in self._final_of.items():
                found.setdefault(gid, set()).add(rid)
            self._final_members = found
        return self._final_members

    def _assign(self, record_id: str, golden_id: str, now: int, seq: int, effective: int) -> None:
        current = self._db.execute(
            "SELECT golden_id, effective_from_us FROM assignments"
            " WHERE record_id = ? AND valid_to_us IS NULL",
            (record_id,),
        ).fetchone()
        if current is not None and current[0] == golden_id:
            return
        if current is not None:
            self._db.execute(
                "UPDATE assignments SET valid_to_us = ? WHERE record_id = ? AND valid_to_us IS NULL",
                (now, record_id),
            )
            effective = max(effective, current[1] if current[1] is not None else now)
        self._db.execute(
            "INSERT INTO assignments VALUES (?, ?, ?, NULL, ?, ?)",
            (record_id, golden_id, now, seq, effective),
        )

    # -- reads ---------------------------------------------------------------------------

    def golden_id(self, record_id: str, at_us: int | None = None) -> str | None:
        """The record's golden id now, or as of ``at_us``; None if unknown then."""
        if at_us is None:
            return self._golden_now(record_id) if self.linker.record(record_id) else None
        row = self._db.execute(
            "SELECT golden_id FROM assignments WHERE record_id = ? AND valid_from_us <= ?"
            " AND (valid_to_us IS NULL OR valid_to_us > ?)",
            (record_id, at_us, at_us),
        ).fetchone()
        return None if row is None else str(row[0])

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
        shared = self._db.execute(
            "SELECT 1 FROM shared_keys WHERE kind = ? AND value = ? AND since_us <= ?",
            (kind.value, value, at_us),
        ).fetchone()
        if shared is not None:
            return None
        row = self._db.execute(
            "SELECT a.golden_id FROM record_keys k JOIN assignments a USING (record_id)"
            " WHERE k.kind = ? AND k.value = ? AND a.valid_from_us <= ?"
            " AND (a.valid_to_us IS NULL OR a.valid_to_us > ?) ORDER BY a.record_id LIMIT 1",
            (kind.value, value, at_us, at_us),
        ).fetchone()
        return None if row is None else str(row[0])

    def members(self, golden_id: str, at_us: int | None = None) -> frozenset[str]:
        """The records under ``golden_id`` now, or as of ``at_us``."""
        if at_us is None:
            return self._members_now(golden_id)
        rows = self._db.execute(
            "SELECT record_id FROM assignments WHERE golden_id = ? AND valid_from_us <= ?"
            " AND (valid_to_us IS NULL OR valid_to_us > ?)",
            (golden_id, at_us, at_us),
        ).fetchall()
        return frozenset(str(r[0]) for r in rows)

    def history(self, golden_id: str) -> list[AuditEntry]:
        """Every change that made, joined, merged, retired or split ``golden_id``."""
        pattern = f'%"{golden_id}"%'
        return self._entries(
            "golden_id = ? OR retired LIKE ? OR created LIKE ?", (golden_id, pattern, pattern)
        )

    def _entries(self, where: str, params: tuple[object, ...]) -> list[AuditEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, at_us, kind, golden_id, record_id, retired, created, reason"
                f" FROM changes WHERE {where} ORDER BY seq",
                params,
            ).fetchall()
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
            for r in rows
        ]

    def clusters(self) -> dict[str, frozenset[str]]:
        """Every golden id now and its records."""
        if self._layer is not None:
            return self._layer.resolver.clusters()
        if self._layer_stored:
            return {gid: frozenset(members) for gid, members in self._stored_clusters().items()}
        return self.linker.clusters()

    def fit_matcher(
        self, policy: LinkPolicy | None = None, settings: MatchSettings | None = None
    ) -> FitReport:
        """Fit the probabilistic layer on the records seen (m from the pairs the strong keys
        link, u from random pairs; no labels), store it, and re-resolve every record with
        it: clusters it joins are merged (audited, followed online). From then on each new
        record is scored on arrival. Fitting again replaces the model."""
        with self._writing():
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

        policy, settings = policy or DEFAULT_POLICY, settings or DEFAULT_SETTINGS
        with self._writing():
            records = self._records_in_order()
            lexicon = lexicon or Lexicon.learn(records)
            scorer = ProbabilisticMatcher(replace(settings, threshold=1e-12), model=model)
            scored = (
                scorer.link(_match_columns(records, lexicon))
                if records
                else Matches(np.zeros((0, 2), np.int64), np.zeros(0))
            )
            self._install(model, lexicon, policy, settings, records, scored)

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
        self._db.execute("DELETE FROM links")
        self._save_pairs(pairs, now)
        self._db.execute(
            "INSERT OR REPLACE INTO model VALUES (1, ?, ?, ?, ?, ?)",
            (model.to_json(), policy.threshold, policy.floor, now, lexicon.to_json()),
        )
        self._layer, self._layer_stored = layer, True
        after = {gid: layer.resolver.cluster(gid) for gid in layer.resolver.clusters()}
        changes = final_changes(before, after, None, "probabilistic matching (re)fitted")
        self._save(None, [], changes, set(), now, now)

    def _do_not_link_pairs(self) -> set[frozenset[str]]:
        rows = self._db.execute("SELECT record_a, record_b FROM do_not_link")
        return {frozenset((str(a), str(b))) for a, b in rows}

    def _records_in_order(self) -> list[IdentityRecord]:
        rows = self._db.execute("SELECT record_id FROM records ORDER BY rowid").fetchall()
        found = [self.linker.record(str(r[0])) for r in rows]
        return [r for r in found if r is not None]

    def review_pairs(self, lower: float, limit: int = 100) -> list[tuple[str, str, float]]:
        """Scored pairs for a person to decide: in the review band (``lower`` <= p < the
        auto-link threshold), or above it but kept apart (their clusters conflict), whose
        records are still in different clusters; best first."""
        if not self._layer_stored:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT record_a, record_b, probability FROM links WHERE probability >= ?"
                " ORDER BY probability DESC, record_a, record_b",
                (lower,),
            ).fetchall()
        found = []
        for a, b, p in rows:
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
        if self.layer is None:
            return None, None
        a, b = sorted((record_a, record_b))
        row = self._db.execute(
            "SELECT probability FROM links WHERE record_a = ? AND record_b = ?", (a, b)
        ).fetchone()
        contributions = self.layer.matcher.explain(
            self.layer.columns(record_a), self.layer.columns(record_b)
        )
        return (None if row is None else float(row[0])), contributions

    def changes_after(self, seq: int) -> list[AuditEntry]:
        """The audit trail past change ``seq``, in order (what a follower has not applied)."""
        return self._entries("seq > ?", (seq,))

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
            query = CURRENT_AT if at_us is not None else CURRENT
            params: tuple[int, ...] = (at_us, at_us) if at_us is not None else ()
        elif axis in ("recorded", "effective"):
            query = RECORDED if axis == "recorded" else EFFECTIVE
            params = ()
        else:
            raise ValueError(f"axis must be recorded, effective or current, not {axis!r}")
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
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

    def _load(self) -> DeterministicLinker:
        db = self._db
        records = [
            IdentityRecord(
                str(rid),
                int(seen),
                frozenset((IdentifierKind(k), str(v)) for k, v in json.loads(keys)),
            )
            for rid, seen, keys in db.execute(
                "SELECT record_id, seen_us, keys FROM records ORDER BY rowid"
            )
        ]
        cluster_of = {
            str(rid): str(gid)
            for rid, gid in db.execute(
                "SELECT record_id, golden_id FROM assignments WHERE valid_to_us IS NULL"
            )
        }
        self._final_of = dict(cluster_of)  # the golden ids now (final clusters)
        # The deterministic clusters: kept apart from the final ones since the probabilistic
        # layer exists; graphs written before keep only the final ones, which were the same.
        cluster_of.update(
            (str(rid), str(gid))
            for rid, gid in db.execute("SELECT record_id, golden_id FROM base_assignments")
        )
        first_of = {str(g): str(r) for g, r in db.execute("SELECT * FROM clusters")}
        shared = {
            (IdentifierKind(k), str(v)): str(why)
            for k, v, why in db.execute("SELECT kind, value, reason FROM shared_keys")
        }
        operator_links = {
            frozenset((str(a), str(b))): str(why)
            for a, b, why in db.execute("SELECT record_a, record_b, reason FROM operator_links")
        }
        linker = DeterministicLinker.restore(
            records, cluster_of, first_of, shared, operator_links, **self._options
        )
        self._layer = None
        self._layer_stored = db.execute("SELECT 1 FROM model").fetchone() is not None
        self._final_members = None
        return linker

    @property
    def layer(self) -> ProbabilisticLayer | None:
        """The probabilistic layer, once a model is fitted; rebuilt from the disk when first
        needed (reads of golden ids use the stored assignments meanwhile)."""
        if self._layer is None and self._layer_stored:
            with self._lock:
                if self._layer is None:
                    self._layer = self._load_layer(self.linker, self._records_in_order())
        return self._layer

    def _load_layer(
        self, linker: DeterministicLinker, records: list[IdentityRecord]
    ) -> ProbabilisticLayer | None:
        """The probabilistic layer as it was: the fitted model, the stored pairs, and
        the do-not-link decisions (None until a model is fitted)."""
        row = self._db.execute("SELECT model, threshold, floor, lexicon FROM model").fetchone()
        if row is None:
            return None
        from crmfs.identity.probabilistic import FellegiSunter
        from crmfs.identity.probabilistic_layer import ProbabilisticLayer

        layer = ProbabilisticLayer(
            FellegiSunter.from_json(row[0]),
            policy=LinkPolicy(float(row[1]), float(row[2])),
            lexicon=Lexicon.from_json(row[3]),
        )
        layer.do_not_link = self._do_not_link_pairs()
        pairs = [
            ScoredPair(str(a), str(b), float(p))
            for a, b, p in self._db.execute("SELECT record_a, record_b, probability FROM links")
        ]
        layer.restore(linker, records, pairs)
        return layer


def _match_columns(records: list[IdentityRecord], lexicon: Lexicon) -> dict[str, list[str | None]]:
    from crmfs.identity.match_columns import MATCH_COLUMNS, columns_of

    found = [columns_of(r, lexicon) for r in records]
    return {c: [cols[c] for cols in found] for c in MATCH_COLUMNS}
