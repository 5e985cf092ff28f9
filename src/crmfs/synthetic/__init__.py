"""Synthetic CRM data: noisy multi-source identities, behavioural events and exact ground truth.

``generate_crm`` writes one Parquet file per table. The data models a company that runs two
CRMs, a newsletter tool, a web shop and a help desk: the same people show up in several systems
under noisy identities, and behave (browse, buy, open emails) according to stable personal
tastes, so both identity resolution and recommendations have something real to learn. Output is
a pure function of ``(scale, seed, end, days)``: byte-identical across runs.

Tables: ``crm_a_contacts``, ``crm_b_leads``, ``marketing_contacts``, ``accounts``,
``opportunities``, ``products``, ``email_events``, ``web_events``, ``support_tickets``,
``purchases`` and ``ground_truth`` (table, record_id) -> person_id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from crmfs.synthetic.accounts import account_created_at, accounts_table, opportunities_table
from crmfs.synthetic.catalog import CATEGORIES, build_catalog, products_table
from crmfs.synthetic.common import Window, stream
from crmfs.synthetic.engagement import build_email_events, build_support_tickets
from crmfs.synthetic.identities import IDENTITY_SOURCES, identity_records
from crmfs.synthetic.people import build_population
from crmfs.synthetic.sources import build_sources
from crmfs.synthetic.web import build_web
from crmfs.synthetic.writer import write_parquet

__all__ = [
    "DEFAULT_END",
    "IDENTITY_SOURCES",
    "TABLES",
    "SyntheticCrm",
    "generate_crm",
    "identity_records",
]

# A fixed anchor rather than "now", so that the same seed always yields the same files.
DEFAULT_END = datetime(2026, 1, 1, tzinfo=UTC)

TABLES: tuple[str, ...] = (
    "crm_a_contacts",
    "crm_b_leads",
    "marketing_contacts",
    "accounts",
    "opportunities",
    "products",
    "email_events",
    "web_events",
    "support_tickets",
    "purchases",
    "ground_truth",
)


@dataclass(frozen=True)
class SyntheticCrm:
    """What :func:`generate_crm` wrote.

    Attributes:
        out_dir: directory holding the files.
        files: table name -> Parquet file (``<out_dir>/<table>.parquet``).
        counts: table name -> number of rows written.
        end: end of the covered window (UTC); events span ``[end - days, end]``.
    """

    out_dir: Path
    files: dict[str, Path]
    counts: dict[str, int]
    end: datetime


def generate_crm(
    out_dir: Path,
    scale: int = 1000,
    seed: int = 0,
    end: datetime | None = None,
    days: int = 90,
    progress: Callable[[str], None] | None = None,
) -> SyntheticCrm:
    """Generate a synthetic multi-source CRM data set and write it as Parquet files.

    Args:
        out_dir: directory to write to (created if missing; existing table files are replaced).
        scale: number of real people (ground-truth persons). Events total roughly 40-60 per
            person, so scale 20,000 gives about a million event rows.
        seed: non-negative random seed; with the other arguments it fully determines the output.
        end: timezone-aware end of the window; defaults to :data:`DEFAULT_END`, never the clock.
        days: length of the window; every timestamp lies in ``[end - days, end]``.
        progress: optional callback receiving short human-readable status messages.

    Returns:
        The files written and their row counts.

    Raises:
        ValueError: for a non-positive ``scale`` or ``days``, a negative ``seed`` or a naive
            ``end``.
    """
    if scale < 1:
        raise ValueError(f"scale must be at least 1, got {scale}")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    window = Window.ending(end if end is not None else DEFAULT_END, days)  # rejects naive
    end_utc = (end if end is not None else DEFAULT_END).astimezone(UTC)
    say: Callable[[str], None] = progress if progress is not None else _quiet

    say(f"people: {scale}")
    pop = build_population(stream(seed, "people"), scale, len(CATEGORIES))
    catalog = build_catalog(stream(seed, "catalog"), scale)
    say("identity sources")
    ids = build_sources(stream(seed, "sources"), pop, window)
    tables: dict[str, pa.Table] = dict(ids.tables)
    acc_rng = stream(seed, "accounts")
    created = account_created_at(acc_rng, pop, window)
    tables["accounts"] = accounts_table(acc_rng, pop, created, window)
    tables["opportunities"] = opportunities_table(
        stream(seed, "opportunities"), pop, ids.primary_contact, created, window
    )
    tables["products"] = products_table(stream(seed, "products"), catalog, window)

    # Only people with a crm_a contact generate events, so the contact id keys every event.
    active = np.array([c is not None for c in ids.primary_contact], dtype=np.bool_)
    say("events: web sessions and purchases")
    web = build_web(stream(seed, "web"), pop, catalog, ids.primary_contact, window)
    tables["web_events"], tables["purchases"] = web.web_events, web.purchases
    say("events: email and support")
    tables["email_events"] = build_email_events(
        stream(seed, "email"), pop, ids.subscribers, active, window
    )
    tables["support_tickets"] = build_support_tickets(
        stream(seed, "support"),
        np.flatnonzero(active).astype(np.int64),
        ids.known_emails,
        [p.personal_email for p in pop.people],
        window,
    )
    cookie_truth = [("web_events", c, pop.people[p].person_id) for c, p in web.cookies]
    truth = sorted(ids.ground_truth + cookie_truth)
    tables["ground_truth"] = pa.table(
        {
            "table": pa.array([t for t, _, _ in truth], pa.string()),
            "record_id": pa.array([r for _, r, _ in truth], pa.string()),
            "person_id": pa.array([p for _, _, p in truth], pa.string()),
        }
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    counts: dict[str, int] = {}
    for name in TABLES:
        files[name] = out_dir / f"{name}.parquet"
        counts[name] = tables[name].num_rows
        write_parquet(tables[name], files[name])
        say(f"wrote {name}: {counts[name]:,} rows")
    return SyntheticCrm(out_dir=out_dir, files=files, counts=counts, end=end_utc)


def _quiet(message: str) -> None:
    """Default progress callback: discard the message."""
