"""Marketing email events and support tickets: event tables keyed by email address."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crmfs.synthetic.common import (
    BOOL,
    I64,
    US_PER_DAY,
    US_PER_HOUR,
    US_PER_MINUTE,
    US_PER_SECOND,
    Window,
    shuffled_ids,
)
from crmfs.synthetic.events import deliver
from crmfs.synthetic.people import Population
from crmfs.synthetic.sources import Subscriber

CAMPAIGN_EVERY_DAYS = 7
CAMPAIGN_HOUR_UTC = 15  # campaigns go out mid-afternoon UTC (morning in the Americas)
SEND_SPREAD_US = 20 * US_PER_MINUTE  # a large send takes a while to go out
RECEIVE_P = 0.85  # segments and suppression lists skip some subscribers per campaign
MEDIAN_OPEN_DELAY_US = 2 * US_PER_HOUR
CLICK_GIVEN_OPEN = 0.3
MEAN_CLICK_DELAY_US = 90 * US_PER_SECOND

TICKETS_PER_PERSON = 0.35
PRIORITIES = ("low", "normal", "high", "urgent")
PRIORITY_P = (0.3, 0.45, 0.2, 0.05)
STATUSES = ("open", "pending", "solved")
PENDING_P = 0.5  # the agent needs something from the customer first
SOLVED_P = 0.85
CSAT_ANSWERED_P = 0.55  # most surveys go unanswered, hence the nullable column
CSAT_P = (0.05, 0.07, 0.15, 0.33, 0.4)


def build_email_events(
    rng: np.random.Generator,
    pop: Population,
    subscribers: list[Subscriber],
    active: BOOL,
    window: Window,
) -> pa.Table:
    """``email_events``: weekly campaigns sent to subscribers, with their opens and clicks.

    Only subscribers whose person has a crm_a contact (``active``) get events, so every person
    with events can be keyed by a contact id.
    """
    subs = [s for s in subscribers if active[s.person]]
    person = np.array([s.person for s in subs], dtype=np.int64)
    since = np.array([s.subscribed_us for s in subs], dtype=np.int64)
    n_camp = max(1, window.span_us // (CAMPAIGN_EVERY_DAYS * US_PER_DAY))
    # Campaign k goes out on the day in the middle of the k-th slice of the window.
    mid = window.start_us + (np.arange(n_camp) * 2 + 1) * window.span_us // (2 * n_camp)
    camp_time = (mid // US_PER_DAY) * US_PER_DAY + CAMPAIGN_HOUR_UTC * US_PER_HOUR
    camp_ids = [f"CMP-{k + 1:03d}" for k in range(n_camp)]

    gets = rng.random((len(subs), n_camp)) < RECEIVE_P
    gets &= camp_time[None, :] >= since[:, None]  # no mail before subscribing
    sub_idx, camp_idx = np.nonzero(gets)
    send = camp_time[camp_idx] + rng.integers(0, SEND_SPREAD_US, size=len(sub_idx))
    opened = np.flatnonzero(rng.random(len(sub_idx)) < pop.engagement[person[sub_idx]])
    open_delay = rng.lognormal(np.log(MEDIAN_OPEN_DELAY_US), 1.2, size=len(opened))
    open_time = send[opened] + open_delay.astype(np.int64)
    clicked = np.flatnonzero(rng.random(len(opened)) < CLICK_GIVEN_OPEN)
    click_delay = rng.exponential(MEAN_CLICK_DELAY_US, size=len(clicked)).astype(np.int64)
    click_time = open_time[clicked] + 5 * US_PER_SECOND + click_delay

    row_send = np.concatenate([np.arange(len(sub_idx)), opened, opened[clicked]])
    kind = np.repeat(np.arange(3), [len(sub_idx), len(opened), len(clicked)])
    when = np.concatenate([send, open_time, click_time])
    keep = when <= window.end_us
    row_send, kind, when = row_send[keep], kind[keep], when[keep]
    payload = pa.table(
        {
            "email": pc.take(pa.array([s.email for s in subs], pa.string()), sub_idx[row_send]),
            "campaign_id": pc.take(pa.array(camp_ids, pa.string()), camp_idx[row_send]),
            "event_type": pc.take(pa.array(["send", "open", "click"], pa.string()), kind),
        }
    )
    return deliver(rng, payload, when, window, "eml-")[0]


def build_support_tickets(
    rng: np.random.Generator,
    active_people: I64,
    known_emails: list[list[str]],
    fallback_emails: list[str],
    window: Window,
) -> pa.Table:
    """``support_tickets``: one row per status change (open, pending, solved) of each ticket.

    A ticket is written from one of the addresses its person uses on their CRM or newsletter
    records, so tickets can be linked to people by email.
    """
    n_tickets = rng.poisson(TICKETS_PER_PERSON, size=len(active_people))
    person = np.repeat(active_people, n_tickets)
    n = len(person)
    choice = rng.random(n)
    emails: list[str] = []
    for p, u in zip(person.tolist(), choice.tolist(), strict=True):
        options = known_emails[p] or [fallback_emails[p]]
        emails.append(options[int(u * len(options))])
    ticket_ids = shuffled_ids(rng, "TCK-", n)
    priority = rng.choice(len(PRIORITIES), size=n, p=PRIORITY_P)

    opened = window.uniform(rng, n)
    pending = rng.random(n) < PENDING_P
    pending_at = opened + rng.exponential(4 * US_PER_HOUR, size=n).astype(np.int64)
    solved = rng.random(n) < SOLVED_P
    solved_at = np.where(pending, pending_at, opened)
    solved_at = solved_at + rng.exponential(20 * US_PER_HOUR, size=n).astype(np.int64)

    ticket = np.concatenate([np.arange(n), np.flatnonzero(pending), np.flatnonzero(solved)])
    status = np.repeat(np.arange(3), [n, int(pending.sum()), int(solved.sum())])
    when = np.concatenate([opened, pending_at[pending], solved_at[solved]])
    csat = rng.choice(5, size=len(ticket), p=CSAT_P) + 1
    answered = (status == 2) & (rng.random(len(ticket)) < CSAT_ANSWERED_P)
    keep = when <= window.end_us  # later status changes have not happened yet
    ticket, status, when, csat, answered = (
        ticket[keep], status[keep], when[keep], csat[keep], answered[keep]
    )  # fmt: skip
    payload = pa.table(
        {
            "email": pc.take(pa.array(emails, pa.string()), ticket),
            "ticket_id": pc.take(pa.array(ticket_ids, pa.string()), ticket),
            "priority": pc.take(pa.array(PRIORITIES, pa.string()), priority[ticket]),
            "status": pc.take(pa.array(STATUSES, pa.string()), status),
            "csat": pa.array(csat, pa.int64(), mask=~answered),
        }
    )
    return deliver(rng, payload, when, window, "tck-")[0]
