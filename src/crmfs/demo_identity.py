"""The demo's identity step: golden ids across the CRM's sources, and what they feed."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from crmfs.store import FeatureStore
from crmfs.synthetic import IDENTITY_SOURCES

# Each CRM table of the synthetic data, its id column and that id's identifier kind.
RECORD_IDS = {
    table: (id_column, kinds[id_column].value)
    for table, (id_column, _, kinds) in IDENTITY_SOURCES.items()
}


def show_identity(
    store: FeatureStore, files: dict[str, Path], now: Any, console: Console
) -> list[tuple[str, str]]:
    """Print clusters, accuracy against the ground truth, a person, and person and account
    features; the figures for the summary."""
    golden = _golden_ids(store, files)
    truth = {
        (row["table"], row["record_id"]): row["person_id"]
        for row in pq.read_table(files["ground_truth"]).to_pylist()
        if row["table"] in RECORD_IDS
    }
    precision, recall = _pairwise(golden, truth)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    clusters = len(set(golden.values()))
    people = len(set(truth.values()))
    shared = store.identity.shared_identifiers()
    console.print(
        f"{len(golden):,} CRM, lead and newsletter records -> {clusters:,} golden ids"
        f" ({people:,} real people); {len(shared)} identifiers stopped linking as shared"
    )
    for key in shared[:3]:
        console.print(
            f"  shared: {key.kind.value} {key.value} ({key.records} records): {key.reason}"
        )
    console.print(
        f"strong keys against the ground truth: pairwise precision {precision:.3f},"
        f" recall {recall:.3f}, F1 {f1:.3f}"
    )
    figures = [
        ("golden ids / real people, strong keys only", f"{clusters:,} / {people:,}"),
        ("identity pairwise precision / recall, strong keys", f"{precision:.3f} / {recall:.3f}"),
    ]
    t = time.perf_counter()
    console.print(f"probabilistic layer: {store.identity.fit()} ({time.perf_counter() - t:.1f} s)")
    golden = _golden_ids(store, files)
    precision, recall = _pairwise(golden, truth)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    clusters = len(set(golden.values()))
    console.print(
        f"with probabilistic matching: {clusters:,} golden ids; pairwise precision"
        f" {precision:.3f}, recall {recall:.3f}, F1 {f1:.3f} (online features followed the merges)"
    )
    figures += [
        ("golden ids, with probabilistic matching", f"{clusters:,}"),
        ("identity pairwise precision / recall, probabilistic", f"{precision:.3f} / {recall:.3f}"),
    ]
    biggest = max(set(golden.values()), key=lambda g: sum(v == g for v in golden.values()))
    card = store.identity.show(biggest)
    table = Table("record", "identifiers")
    for member in card.members:
        ids = ", ".join(
            f"{k}={v}"
            for k, v in member.identifiers
            if k in ("email", "phone") or k.endswith("_id")
        )
        table.add_row(member.record_id, ids)
    console.print(
        f"golden id {card.golden_id}: {len(card.members)} records, "
        f"{len(card.history)} changes in its history"
    )
    console.print(table)
    _features(store, card.members, now, console)
    return figures


def _golden_ids(store: FeatureStore, files: dict[str, Path]) -> dict[tuple[str, str], str]:
    found = {}
    for table, (column, kind) in RECORD_IDS.items():
        for value in pq.read_table(files[table], columns=[column])[column].to_pylist():
            gid = store.identity.resolve(kind, value)
            if gid is not None:
                found[(table, value)] = gid
    return found


def _pairwise(
    golden: dict[tuple[str, str], str], truth: dict[tuple[str, str], str]
) -> tuple[float, float]:
    """Pairwise precision and recall of the golden ids over the records in both: pairs
    counted per golden id, per person and per (golden id, person)."""
    records = [r for r in golden if r in truth]
    found = _pairs(Counter(golden[r] for r in records))
    true = _pairs(Counter(truth[r] for r in records))
    hits = _pairs(Counter((golden[r], truth[r]) for r in records))
    return (hits / found if found else 1.0, hits / true if true else 1.0)


def _pairs(sizes: Counter[Any]) -> int:
    return sum(n * (n - 1) // 2 for n in sizes.values())


def _features(store: FeatureStore, members: list[Any], now: Any, console: Console) -> None:
    emails = [v for m in members for k, v in m.identifiers if k == "email"]
    if emails:
        response = store.get_online_features(
            ["email_engagement:opens_30d", "support:tickets_30d"], [{"email": emails[0]}], now=now
        )
        console.print(
            f"online, looked up by email {emails[0]}: opens_30d ="
            f" {response.values['email_engagement:opens_30d'][0]}, tickets_30d ="
            f" {response.values['support:tickets_30d'][0]}"
        )
    accounts = sorted({r["account_id"] for r in _contacts(store) if r["account_id"] is not None})[
        :5
    ]
    response = store.get_online_features(
        ["account_engagement:opens_30d", "account_engagement:engaged_addresses_30d"],
        [{"account_id": a} for a in accounts],
        now=now,
    )
    table = Table("account", "opens by its contacts, 30d", "addresses engaged, 30d")
    for i, account in enumerate(accounts):
        table.add_row(
            account,
            str(response.values["account_engagement:opens_30d"][i]),
            str(response.values["account_engagement:engaged_addresses_30d"][i]),
        )
    console.print(table)


def _contacts(store: FeatureStore) -> list[dict[str, Any]]:
    logged = store.log.read("crm_a_contacts")
    return [] if logged is None else logged.select(["account_id"]).to_pylist()
