"""Identity resolution measured on the synthetic CRM's ground truth, through crmfs's own graph.

``crmfs generate`` writes three identity sources (``crm_a_contacts``, ``crm_b_leads``,
``marketing_contacts``) and ``ground_truth(table, record_id, person_id)``. Each record goes
through what ingestion does: normalized identifiers -> ``IdentityGraph`` (strong keys, the
name rule), then ``fit_matcher`` (the probabilistic layer fitted without labels, with its
default columns, settings and policy, ``crmfs.identity.match_columns``). Figures:

- ``synthetic_pairwise_f1``: precision and recall over pairs of records put in one cluster,
  against the pairs of records of one person.
- ``synthetic_cluster_f1``: exact clusters. Precision is the share of the clusters found that
  are exactly one person's records (all of them, nothing else); recall is the share of
  people whose records form exactly one found cluster; F1 their harmonic mean. (B-cubed F1,
  kinder to a cluster missing one record, is logged beside it.)
- ``synthetic_stream_differences``: graphs that take the fitted model first and then get the
  records one at a time (each scored on arrival), in a shuffled order and in time order; the
  number of records whose cluster (as a set of records) differs from the first load's.
- ``golden_id_churn``: in the time-ordered stream, how many times a record's golden id
  changed in a step that merged or split nothing (read off the graph's assignments).

The policy and settings are crmfs's defaults, chosen on another seed of the generator (seed
0) and applied here to seed 1 as they are.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crmfs.identity.deterministic import IdentityRecord
from crmfs.identity.graph import IdentityGraph
from crmfs.identity.lexicon import Lexicon
from crmfs.identity.match_columns import columns_of
from crmfs.synthetic import generate_crm, identity_records

SCALE = 2000
SEED = 1  # the defaults were chosen on seed 0


def log(message: str) -> None:
    print(f"[synthetic_identity_bench] {message}", file=sys.stderr, flush=True)


def figure(name: str, value: float, unit: str) -> dict[str, Any]:
    return {"name": name, "value": round(float(value), 4), "unit": unit}


def ensure_synthetic(work_dir: Path, scale: int = SCALE, seed: int = SEED) -> Path:
    folder = work_dir / f"synthetic_crm_{scale}_{seed}"
    if not (folder / "ground_truth.parquet").exists():
        generate_crm(folder, scale=scale, seed=seed, progress=None)
    return folder


def load_records(folder: Path) -> tuple[list[IdentityRecord], dict[str, str]]:
    """Every identity record of the three sources in time order, and each one's person."""
    return identity_records(folder)


def _graph(folder: Path, name: str) -> IdentityGraph:
    return IdentityGraph(folder / f"{name}.db", lambda: 0)


def stream(folder: Path, name: str, records: list[IdentityRecord], first: IdentityGraph) -> Any:
    """A graph given the first load's model, then the records one at a time."""
    graph = _graph(folder, name)
    assert first.layer is not None
    assert first.layer.matcher.model is not None
    graph.use_model(first.layer.matcher.model, first.layer.policy, lexicon=first.layer.lexicon)
    for i, record in enumerate(records):
        graph.add_all([record], at_us=i + 1)  # each its own step, in this order
    return graph


def churn(graph: IdentityGraph) -> int:
    """Golden-id changes of known records in steps that merged or split nothing."""
    db = sqlite3.connect(graph.path)
    try:
        row = db.execute(
            "SELECT count(*) FROM assignments a JOIN changes c ON c.seq = a.change_seq"
            " WHERE EXISTS (SELECT 1 FROM assignments e WHERE e.record_id = a.record_id"
            "               AND e.valid_from_us < a.valid_from_us)"
            " AND NOT EXISTS (SELECT 1 FROM changes m WHERE m.at_us = c.at_us"
            "                 AND m.kind IN ('merged', 'split'))"
        ).fetchone()
    finally:
        db.close()
    return int(row[0])


def pairs_of(clusters: Iterable[frozenset[str]]) -> set[tuple[str, str]]:
    found = set()
    for members in clusters:
        ordered = sorted(members)
        found.update((a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :])
    return found


def scores(clusters: Iterable[frozenset[str]], person_of: Mapping[str, str]) -> dict[str, float]:
    found = list(clusters)
    people: dict[str, set[str]] = {}
    for rid in (r for c in found for r in c):
        people.setdefault(person_of[rid], set()).add(rid)
    truth = [frozenset(m) for m in people.values()]
    got, want = pairs_of(found), pairs_of(truth)
    hits = len(got & want)
    p, r = hits / max(1, len(got)), hits / max(1, len(want))
    exact = set(found) & set(truth)
    cp, cr = len(exact) / len(found), len(exact) / len(truth)
    cluster_of = {rid: c for c in found for rid in c}
    bp = br = 0.0
    for rid, cluster in cluster_of.items():
        same = sum(1 for x in cluster if person_of[x] == person_of[rid])
        bp += same / len(cluster)
        br += same / len(people[person_of[rid]])
    bp, br = bp / len(cluster_of), br / len(cluster_of)
    return {
        "pairwise_precision": p,
        "pairwise_recall": r,
        "pairwise_f1": 2 * p * r / (p + r or 1),
        "cluster_precision": cp,
        "cluster_recall": cr,
        "cluster_f1": 2 * cp * cr / (cp + cr or 1),
        "bcubed_f1": 2 * bp * br / (bp + br or 1),
    }


def namesake_only(
    records: list[IdentityRecord], person_of: Mapping[str, str], lexicon: Lexicon
) -> Ambiguity:
    """Records that nothing but a full name shared with another person ties to their person
    (no phone, company or city, an address no other record holds), by full name, with the
    people of that name and who of them has a personal address on another record."""
    columns = {r.record_id: columns_of(r, lexicon) for r in records}
    holders: dict[str | None, int] = {}
    names: dict[tuple[str | None, str | None], set[str]] = {}
    for rid, c in columns.items():
        holders[c["email"]] = holders.get(c["email"], 0) + 1
        names.setdefault((c["first"], c["last"]), set()).add(person_of[rid])
    found = Ambiguity()
    for rid, c in columns.items():
        name = (c["first"], c["last"])
        if (
            c["first"]
            and c["last"]
            and not (c["phone"] or c["company"] or c["city"])
            and holders[c["email"]] <= 1
            and len(names[name]) > 1
        ):
            found.records.setdefault(name, []).append(rid)
            found.namesakes[name] = sorted(names[name])
    ambiguous = {rid for rids in found.records.values() for rid in rids}
    found.with_personal_address = {
        person_of[rid] for rid, c in columns.items() if c["personal_email"] and rid not in ambiguous
    }
    return found


@dataclass
class Ambiguity:
    records: dict[tuple[str | None, str | None], list[str]] = field(default_factory=dict)
    namesakes: dict[tuple[str | None, str | None], list[str]] = field(default_factory=dict)
    with_personal_address: set[str] = field(default_factory=set)

    def __len__(self) -> int:
        return sum(map(len, self.records.values()))


def oracle_cluster_f1(person_of: Mapping[str, str], ambiguous: Ambiguity) -> tuple[float, float]:
    """Exact-cluster F1 of a matcher right about every record but the namesake-only ones:
    leaving each of those alone; and giving those of one name to that name's people at
    random, one each, first to those with no personal address yet (this generator gives
    each person one), the mean of 20 draws. About what this generator lets a matcher reach
    at best."""
    alone_ids = {rid for rids in ambiguous.records.values() for rid in rids}
    people: dict[str, set[str]] = {}
    for rid, person in person_of.items():
        if rid not in alone_ids:
            people.setdefault(person, set()).add(rid)
    alone = [frozenset(m) for m in people.values()] + [frozenset({r}) for r in alone_ids]
    rng = random.Random(0)
    draws = []
    for _ in range(20):
        owner = {person: set(members) for person, members in people.items()}
        for name, rids in ambiguous.records.items():
            namesakes = ambiguous.namesakes[name]
            free = [p for p in namesakes if p not in ambiguous.with_personal_address]
            rng.shuffle(free)
            for k, rid in enumerate(rng.sample(rids, len(rids))):
                target = free[k] if k < len(free) else rng.choice(namesakes)
                owner.setdefault(target, set()).add(rid)
        draws.append(scores([frozenset(m) for m in owner.values()], person_of)["cluster_f1"])
    return scores(alone, person_of)["cluster_f1"], sum(draws) / len(draws)


def differences(a: Mapping[str, frozenset[str]], b: Mapping[str, frozenset[str]]) -> int:
    """Records whose cluster (as a set of records) differs between ``a`` and ``b``."""
    of_a = {rid: c for c in a.values() for rid in c}
    of_b = {rid: c for c in b.values() for rid in c}
    return sum(1 for rid, c in of_a.items() if of_b.get(rid) != c)


def run_synthetic_identity_bench(work_dir: Path) -> list[dict[str, Any]]:
    records, person_of = load_records(ensure_synthetic(work_dir))
    with tempfile.TemporaryDirectory(prefix="crmfs-identity-") as scratch:
        folder = Path(scratch)
        start = time.perf_counter()
        first = _graph(folder, "first_load")
        first.add_all(records, at_us=1)
        strong = scores(first.clusters().values(), person_of)
        first.fit_matcher()
        clusters = first.clusters()
        got = scores(clusters.values(), person_of)
        log(
            f"{len(records)} records, {len(clusters)} clusters in"
            f" {time.perf_counter() - start:.1f} s; strong keys only: pairwise F1"
            f" {strong['pairwise_f1']:.4f}, cluster F1 {strong['cluster_f1']:.4f}; with the"
            " probabilistic layer: " + ", ".join(f"{k} {v:.4f}" for k, v in got.items())
        )
        shuffled = list(records)
        random.Random(7).shuffle(shuffled)
        streamed = stream(folder, "shuffled", shuffled, first)
        timed = stream(folder, "in_time", records, first)
        moved = differences(clusters, streamed.clusters()) + differences(clusters, timed.clusters())
        changed = churn(timed)
        log(f"streamed: {moved} records clustered differently from the first load, churn {changed}")
        assert first.layer is not None
        ambiguous = namesake_only(records, person_of, first.layer.lexicon)
        cautious, gambling = oracle_cluster_f1(person_of, ambiguous)
        log(
            f"{len(ambiguous)} records only a namesake's full name ties to their person; a"
            f" matcher right about every other record reaches exact-cluster F1 {cautious:.4f}"
            f" leaving them alone, {gambling:.4f} sharing them out at random among their"
            " namesakes, one each"
        )
        for graph in (first, streamed, timed):
            graph.close()
    return [
        figure("synthetic_pairwise_f1", got["pairwise_f1"], "F1"),
        figure("synthetic_cluster_f1", got["cluster_f1"], "F1"),
        figure("synthetic_stream_differences", moved, "records"),
        figure("golden_id_churn", changed, "ids"),
        figure("synthetic_cluster_f1_oracle", gambling, "F1"),
    ]


if __name__ == "__main__":
    import json

    if len(sys.argv) != 2:
        print("usage: python bench/synthetic_identity_bench.py WORK_DIR", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(run_synthetic_identity_bench(Path(sys.argv[1])), indent=2))
