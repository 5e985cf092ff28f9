"""B2B tables of the Salesforce-like CRM: ``accounts`` and the ``opportunities`` stage log."""

from __future__ import annotations

import math
import random

import numpy as np
import pyarrow as pa

from crmfs.synthetic.common import (
    I64,
    US_PER_DAY,
    US_PER_HOUR,
    Window,
    event_ids,
    py_random,
    timestamps,
)
from crmfs.synthetic.people import Population

OPEN_STAGES = ("Prospecting", "Qualification", "Proposal")
# Chance an opportunity advances past each open stage; otherwise it may be lost there.
ADVANCE = {"Prospecting": 0.75, "Qualification": 0.7, "Proposal": 0.8}
LOST_WHEN_STALLED = 0.4
WIN_RATE = 0.5
OPPORTUNITIES_PER_ACCOUNT = 1.5
MEAN_DAYS_IN_STAGE = 6.0
ACCOUNTS_CREATED_BY = 0.2  # fraction of the window by which every account exists


def account_created_at(rng: np.random.Generator, pop: Population, window: Window) -> I64:
    """Creation time per account, early in the window so deals come after their account."""
    limit = window.start_us + int(window.span_us * ACCOUNTS_CREATED_BY)
    return rng.integers(window.start_us, limit + 1, size=len(pop.accounts), dtype=np.int64)


def accounts_table(
    rng: np.random.Generator, pop: Population, created_at: I64, window: Window
) -> pa.Table:
    """The ``accounts`` table, one row per company."""
    n = len(pop.accounts)
    return pa.table(
        {
            "account_id": pa.array([a.account_id for a in pop.accounts], pa.string()),
            "name": pa.array([a.name for a in pop.accounts], pa.string()),
            "domain": pa.array([a.domain for a in pop.accounts], pa.string()),
            "industry": pa.array([a.industry for a in pop.accounts], pa.string()),
            "created_at": timestamps(created_at),
            "event_id": event_ids(rng, "acc-ev-", n)[0],
        }
    )


def _stage_path(rnd: random.Random) -> list[str]:
    """The stages one opportunity goes through, in order."""
    path: list[str] = []
    for stage in OPEN_STAGES:
        path.append(stage)
        if rnd.random() >= ADVANCE[stage]:
            if rnd.random() < LOST_WHEN_STALLED:
                path.append("Closed Lost")
            return path
    path.append("Closed Won" if rnd.random() < WIN_RATE else "Closed Lost")
    return path


def opportunities_table(
    rng: np.random.Generator,
    pop: Population,
    primary_contact: list[str | None],
    account_created: I64,
    window: Window,
) -> pa.Table:
    """The ``opportunities`` table: one row per stage change, only changes up to ``end``."""
    rnd = py_random(rng)
    contacts_at: dict[int, list[str]] = {}
    for p in pop.people:
        contact = primary_contact[p.index]
        if contact is not None:
            contacts_at.setdefault(p.account, []).append(contact)

    opp_ids: list[str] = []
    account_ids: list[str] = []
    contact_ids: list[str] = []
    amounts: list[float] = []
    stages: list[str] = []
    changed: list[int] = []
    n_opp = 0
    for acc in pop.accounts:
        contacts = contacts_at.get(acc.index)
        if not contacts:
            continue  # an opportunity always has a contact person in crm_a
        for _ in range(int(rng.poisson(OPPORTUNITIES_PER_ACCOUNT))):
            n_opp += 1
            contact = rnd.choice(contacts)
            amount = round(math.exp(rnd.gauss(math.log(20_000), 0.8)), 2)
            # After the account exists, and early enough that most deals visibly progress.
            opened = int(account_created[acc.index])
            t = rnd.randrange(opened, max(opened, window.start_us + int(window.span_us * 0.7)) + 1)
            for stage in _stage_path(rnd):
                if t > window.end_us:
                    break  # later stage changes have not happened yet at ``end``
                if stage == "Proposal":
                    amount = round(amount * rnd.uniform(0.8, 1.2), 2)  # the quote revises it
                opp_ids.append(f"OPP-{n_opp:06d}")
                account_ids.append(acc.account_id)
                contact_ids.append(contact)
                amounts.append(amount)
                stages.append(stage)
                changed.append(t)
                t += US_PER_HOUR + int(rnd.expovariate(1.0) * MEAN_DAYS_IN_STAGE * US_PER_DAY)

    return pa.table(
        {
            "opportunity_id": pa.array(opp_ids, pa.string()),
            "account_id": pa.array(account_ids, pa.string()),
            "contact_id": pa.array(contact_ids, pa.string()),
            "amount": pa.array(amounts, pa.float64()),
            "stage": pa.array(stages, pa.string()),
            "stage_changed_at": timestamps(np.array(changed, dtype=np.int64)),
            "event_id": event_ids(rng, "opp-ev-", len(opp_ids))[0],
        }
    )
