"""``crmfs identity``: show a person's records and history, explain a link, merge, split.

References (``REF``) are what ``IdentityService`` accepts: a golden id (``g...``), an
identity record id (``r...``) or an identifier as ``kind=value``
(``email=ann@example.com``). Errors (an unknown reference, an empty reason) are
``CrmfsError``s: ``crmfs``'s ``main`` prints them without a traceback and exits 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crmfs.errors import ConfigError
from crmfs.timestamps import from_micros

if TYPE_CHECKING:
    from crmfs.identity.deterministic import ClusterChange
    from crmfs.identity.graph import AuditEntry
    from crmfs.identity.service import Explanation, IdentityCard, IdentityService

identity_app = typer.Typer(
    help="Look people up, explain links, merge and split (operator decisions are audited).",
    no_args_is_help=True,
)
console = Console()
# The same options as crmfs.cli.app's (importing them from there would be circular).
Repo = Annotated[Path, typer.Option("--repo", "-r", help="Project folder (holds crmfs.yaml)")]
Ref = Annotated[str, typer.Argument(help="Golden id (g...), record id (r...) or kind=value")]
Reason = Annotated[str, typer.Option(help="Why (kept in the audit trail)")]
AsJson = Annotated[bool, typer.Option("--json", help="JSON output")]


@contextmanager
def _identity(repo: Path) -> Iterator[IdentityService]:
    from crmfs.store import FeatureStore

    store = FeatureStore(repo)
    try:
        yield store.identity
    finally:
        store.close()


def _iso(micros: int, timespec: str = "auto") -> str:
    return from_micros(micros).isoformat(timespec=timespec)


def _print_json(value: object) -> None:
    print(json.dumps(value, default=str, indent=2))


@identity_app.command()
def show(ref: Ref, repo: Repo = Path("."), as_json: AsJson = False) -> None:
    """A golden id now: its records with their identifiers, and its history."""
    with _identity(repo) as identity:
        card = identity.show(ref)
    if as_json:
        _print_json(_card_json(card))
        return
    console.print(f"golden id [bold]{card.golden_id}[/bold] ({len(card.members)} record(s))")
    table = Table("record", "first seen", "kind", "value")
    for m in card.members:
        for i, (kind, value) in enumerate(m.identifiers):
            first = i == 0
            table.add_row(
                m.record_id if first else "",
                _iso(m.seen_us, "seconds") if first else "",
                kind,
                escape(value),
            )
    console.print(table)
    console.print("history:")
    for entry in card.history:
        console.print(f"  {_iso(entry.at_us, 'seconds')}  {_change_text(entry)}")


@identity_app.command()
def explain(a: Ref, b: Ref, repo: Repo = Path("."), as_json: AsJson = False) -> None:
    """Why two records are, or are not, one person."""
    with _identity(repo) as identity:
        why = identity.explain(a, b)
    if as_json:
        _print_json(_explanation_json(why))
        return
    console.print(f"{why.record_a} and {why.record_b}: {escape(why.summary)}")
    console.print(f"  same person: {'yes' if why.same_person else 'no'}")
    console.print(f"  golden ids: {why.golden_a} / {why.golden_b}")
    link = "none" if why.operator_link is None else escape(why.operator_link)
    console.print(f"  operator link: {link}")
    if why.probability is not None:
        console.print(f"  probabilistic score: {why.probability:.3f}")
    if why.contributions:
        parts = ", ".join(f"{name} {weight:+.1f}" for name, weight in why.contributions.items())
        console.print(f"  comparisons (log2 m/u): {escape(parts)}")
    if not why.shared_identifiers:
        console.print("  shared identifiers: none")
        return
    table = Table("kind", "value", "status")
    for e in why.shared_identifiers:
        table.add_row(e.kind, escape(e.value), escape(e.status))
    console.print(table)


@identity_app.command()
def merge(a: Ref, b: Ref, reason: Reason, repo: Repo = Path(".")) -> None:
    """The two are one person: their clusters merge (the older golden id survives)."""
    with _identity(repo) as identity:
        changes = identity.merge(a, b, _reason(reason))
        _print_outcome(identity, a, b, changes)


@identity_app.command()
def split(a: Ref, b: Ref, reason: Reason, repo: Repo = Path(".")) -> None:
    """The two are different people (do-not-link): the strong identifiers they share stop
    linking and their cluster is rebuilt without them."""
    with _identity(repo) as identity:
        changes = identity.split(a, b, _reason(reason))
        _print_outcome(identity, a, b, changes)
        if identity.golden_id(a) == identity.golden_id(b):
            console.print("still one cluster: other records connect them (see `identity show`)")


def _reason(reason: str) -> str:
    # Checked here too: the service's own check raises a ValueError, which main() would not
    # turn into a clear message.
    if not reason.strip():
        raise ConfigError("--reason: give a reason, it is kept in the audit trail")
    return reason


def _print_outcome(identity: IdentityService, a: str, b: str, changes: list[ClusterChange]) -> None:
    for change in changes:
        console.print(_change_text(change))
    console.print(f"{len(changes)} change(s)")
    console.print(
        f"now {escape(a)} is {identity.golden_id(a)}, {escape(b)} is {identity.golden_id(b)}"
    )


@identity_app.command()
def fit(repo: Repo = Path(".")) -> None:
    """Fit the probabilistic layer on the records seen (no labels) and re-resolve them; from
    then on each new record is also matched probabilistically on arrival."""
    with _identity(repo) as identity:
        console.print(escape(identity.fit()))


@identity_app.command()
def review(
    repo: Repo = Path("."),
    limit: Annotated[int, typer.Option(help="At most this many pairs")] = 50,
    as_json: AsJson = False,
) -> None:
    """Pairs of records to decide on: scored in the review band, or kept apart by a conflict;
    settle each with `crmfs identity merge` or `split`."""
    with _identity(repo) as identity:
        pairs = identity.review(limit)
    if as_json:
        _print_json([{"record_a": a, "record_b": b, "probability": p} for a, b, p in pairs])
        return
    table = Table("record", "record", "probability")
    for a, b, p in pairs:
        table.add_row(a, b, f"{p:.3f}")
    console.print(table)
    console.print(f"{len(pairs)} pair(s) to review")


@identity_app.command()
def shared(repo: Repo = Path("."), as_json: AsJson = False) -> None:
    """Identifiers that stopped linking (household phones, info@ mailboxes, do-not-link)."""
    with _identity(repo) as identity:
        keys = identity.shared_identifiers()
    if as_json:
        _print_json(
            [
                {"kind": k.kind.value, "value": k.value, "records": k.records, "reason": k.reason}
                for k in keys
            ]
        )
        return
    table = Table("kind", "value", "records", "reason")
    for k in keys:
        table.add_row(k.kind.value, escape(k.value), str(k.records), escape(k.reason))
    console.print(table)
    console.print(f"{len(keys)} shared identifier(s)")


def _change_text(change: AuditEntry | ClusterChange) -> str:
    """One change on one line: kind, golden id, the record, ids retired and created, why."""
    parts = [f"{change.kind.value:<6}", change.golden_id]
    if change.record_id:
        parts.append(f"record {change.record_id}")
    if change.retired:
        parts.append(f"retired {', '.join(change.retired)}")
    if change.created:
        parts.append(f"created {', '.join(change.created)}")
    if change.reason:
        parts.append(f"({escape(change.reason)})")
    return "  ".join(parts)


def _card_json(card: IdentityCard) -> dict[str, Any]:
    return {
        "golden_id": card.golden_id,
        "members": [
            {
                "record_id": m.record_id,
                "first_seen": _iso(m.seen_us),
                "identifiers": [{"kind": k, "value": v} for k, v in m.identifiers],
            }
            for m in card.members
        ],
        "history": [
            {
                "seq": e.seq,
                "at": _iso(e.at_us),
                "kind": e.kind.value,
                "golden_id": e.golden_id,
                "record_id": e.record_id,
                "retired": list(e.retired),
                "created": list(e.created),
                "reason": e.reason,
            }
            for e in card.history
        ],
    }


def _explanation_json(why: Explanation) -> dict[str, Any]:
    return {
        "record_a": why.record_a,
        "record_b": why.record_b,
        "golden_a": why.golden_a,
        "golden_b": why.golden_b,
        "same_person": why.same_person,
        "summary": why.summary,
        "operator_link": why.operator_link,
        "probability": why.probability,
        "contributions": why.contributions,
        "shared_identifiers": [
            {"kind": e.kind, "value": e.value, "status": e.status} for e in why.shared_identifiers
        ],
    }
