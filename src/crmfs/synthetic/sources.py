"""Identity-bearing source tables: two CRMs and a newsletter tool, plus their ground truth.

Each table is a noisy view of :class:`~crmfs.synthetic.people.Population`. The noise differs per
source (see the ``*_NOISE`` profiles) and a person can have several records in one source
(duplicates created by different reps or forms), which is what identity resolution must undo.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from crmfs.synthetic import names, noise
from crmfs.synthetic.common import Window, event_ids, py_random, shuffled_ids, timestamps
from crmfs.synthetic.people import Person, Population

# Sales reps type contacts by hand: typos, shouting caps, mixed phone layouts, gaps.
CRM_A_NOISE = noise.NoiseProfile(
    nickname=0.15, typo=0.04, upper=0.05, lower=0.04, whitespace=0.05, missing_email=0.08,
    missing_phone=0.15, email_case=0.08, email_typo=0.01,
    phone_styles=("intl_dash", "paren", "plain", "zero_zero", "dots"),
)  # fmt: skip
# Leads fill in web forms themselves: lower case, nicknames, fewer typos, phone often skipped.
CRM_B_NOISE = noise.NoiseProfile(
    nickname=0.25, typo=0.02, upper=0.02, lower=0.2, whitespace=0.08, missing_email=0.02,
    missing_phone=0.35, email_case=0.05, email_typo=0.005, phone_styles=("plain", "e164", "paren"),
)  # fmt: skip
# The newsletter tool trims input and only keeps a first name, often the nickname.
MARKETING_NOISE = noise.NoiseProfile(
    nickname=0.4, typo=0.01, upper=0.01, lower=0.15, whitespace=0.0, missing_email=0.0,
    missing_phone=1.0, email_case=0.1, email_typo=0.0, phone_styles=("plain",),
)  # fmt: skip

IN_CRM_A = 0.85
IN_CRM_B_IF_A = 0.6  # 0.85 x 0.6: about half of all people are in both CRMs
IN_CRM_B_IF_NOT_A = 0.8
SUBSCRIBED = 0.6
DUPLICATE_TYPO_BOOST = 0.1  # a second record for the same person is typed by someone else


@dataclass(frozen=True)
class Subscriber:
    """A newsletter subscription, needed again to address the email events."""

    subscriber_id: str
    email: str  # exactly as the marketing tool stores it
    person: int
    subscribed_us: int


@dataclass
class Identities:
    """Everything later stages need to know about who is who in the sources."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    # Per person: the crm_a contact id used as ``customer_id`` in web events and purchases
    # (their oldest contact record), or None for people not in crm_a.
    primary_contact: list[str | None] = field(default_factory=list)
    # Per person: canonical personal/work addresses appearing on their records (never role
    # mailboxes), which is what they would write to support from.
    known_emails: list[list[str]] = field(default_factory=list)
    subscribers: list[Subscriber] = field(default_factory=list)
    ground_truth: list[tuple[str, str, str]] = field(default_factory=list)  # table, record, person


def _given_name(rnd: random.Random, p: Person, profile: noise.NoiseProfile, boost: float) -> str:
    first = p.goes_by
    if p.nicknames and rnd.random() < profile.nickname:
        first = rnd.choice((p.first_name, *p.nicknames))
    return noise.name(rnd, first, profile, boost)


def _choose_email(
    rnd: random.Random, p: Person, role: str | None, p_role: float, p_work: float
) -> tuple[str, bool]:
    """(canonical address, is it a shared role mailbox) for one record."""
    if role is not None and rnd.random() < p_role:
        return role, True
    return (p.work_email if rnd.random() < p_work else p.personal_email), False


def _phone(rnd: random.Random, p: Person, profile: noise.NoiseProfile) -> str | None:
    if rnd.random() < profile.missing_phone:
        return None
    # Household members often give the shared landline, so one number maps to several people.
    digits = p.household_phone if p.household_phone and rnd.random() < 0.5 else p.mobile
    return noise.phone(rnd, digits, profile)


def _remember(known: set[str], address: str, stored: str, is_role: bool) -> None:
    """Note ``address`` as one the person uses, if the record shows it recognisably.

    Role mailboxes are shared, and a typo'd copy does not show the real address anywhere, so
    neither would let a support ticket written from it be linked back through these records.
    """
    if not is_role and stored.strip().lower() == address:
        known.add(address)


def _copies(rnd: random.Random, p_two: float, p_three: float) -> int:
    u = rnd.random()
    return 3 if u < p_three else 2 if u < p_three + p_two else 1


Columns = dict[str, list[str | None]]


def _finish(
    rng: np.random.Generator,
    ids: list[str],
    columns: Columns,
    times: dict[str, list[int]],
    layout: tuple[str, ...],
    event_prefix: str,
) -> pa.Table:
    """Columns -> table in ``layout`` order, rows sorted by record id, one event id per row."""
    # Ids are zero-padded to one width, so string order is numeric order, like a CRM export.
    order = sorted(range(len(ids)), key=ids.__getitem__)
    data: dict[str, pa.Array] = {layout[0]: pa.array([ids[i] for i in order], pa.string())}
    for col, values in columns.items():
        data[col] = pa.array([values[i] for i in order], pa.string())
    for col, stamps in times.items():
        data[col] = timestamps(np.array([stamps[i] for i in order], dtype=np.int64))
    data["event_id"] = event_ids(rng, event_prefix, len(order))[0]
    return pa.table({col: data[col] for col in layout})


def build_sources(rng: np.random.Generator, pop: Population, window: Window) -> Identities:
    """Generate ``crm_a_contacts``, ``crm_b_leads``, ``marketing_contacts`` and ground truth."""
    rnd = py_random(rng)
    out = Identities(primary_contact=[None] * len(pop.people))
    known: list[set[str]] = [set() for _ in pop.people]
    a_cols: Columns = {c: [] for c in ("account_id", "first_name", "last_name", "email")}
    a_cols |= {"phone": [], "city": []}
    a_time: list[int] = []
    a_owner: list[int] = []
    b_cols: Columns = {c: [] for c in ("first_name", "last_name", "email", "phone", "company")}
    b_time: list[int] = []
    b_owner: list[int] = []
    subscriptions: list[tuple[int, str]] = []  # (person, canonical address)

    for p in pop.people:
        acc = pop.accounts[p.account]
        in_a = rnd.random() < IN_CRM_A
        in_b = rnd.random() < (IN_CRM_B_IF_A if in_a else IN_CRM_B_IF_NOT_A)
        # Nobody is invisible: a person in neither CRM at least subscribed to the newsletter.
        subscribed = rnd.random() < SUBSCRIBED or not (in_a or in_b)
        for copy in range(_copies(rnd, 0.14, 0.03) if in_a else 0):
            boost = DUPLICATE_TYPO_BOOST if copy else 0.0
            address, is_role = _choose_email(rnd, p, acc.role_email, 0.4, 0.7)
            email = None
            if rnd.random() >= CRM_A_NOISE.missing_email:
                email = noise.email(rnd, address, CRM_A_NOISE)
                _remember(known[p.index], address, email, is_role)
            city, _, abbrev = names.CITIES[p.city]
            a_cols["account_id"].append(acc.account_id if rnd.random() < 0.95 else None)
            a_cols["first_name"].append(_given_name(rnd, p, CRM_A_NOISE, boost))
            a_cols["last_name"].append(noise.name(rnd, p.last_name, CRM_A_NOISE, boost))
            a_cols["email"].append(email)
            a_cols["phone"].append(_phone(rnd, p, CRM_A_NOISE))
            city_typed = abbrev if rnd.random() < 0.1 else city
            a_cols["city"].append(noise.name(rnd, city_typed, CRM_A_NOISE))
            a_time.append(rnd.randrange(window.start_us, window.end_us))
            a_owner.append(p.index)
        for _ in range(_copies(rnd, 0.1, 0.0) if in_b else 0):
            address, is_role = _choose_email(rnd, p, acc.role_email, 0.3, 0.4)
            email = None
            if rnd.random() >= CRM_B_NOISE.missing_email:
                email = noise.email(rnd, address, CRM_B_NOISE)
                _remember(known[p.index], address, email, is_role)
            company = None
            if rnd.random() < 0.9:
                company = noise.company(rnd, acc.name, names.LEGAL_FORMS)
            b_cols["first_name"].append(_given_name(rnd, p, CRM_B_NOISE, 0.0))
            b_cols["last_name"].append(noise.name(rnd, p.last_name, CRM_B_NOISE))
            b_cols["email"].append(email)
            b_cols["phone"].append(_phone(rnd, p, CRM_B_NOISE))
            b_cols["company"].append(company)
            b_time.append(rnd.randrange(window.start_us, window.end_us))
            b_owner.append(p.index)
        if subscribed:
            first = p.personal_email if rnd.random() < 0.75 else p.work_email
            addresses = [first]
            if rnd.random() < 0.1:  # also subscribed with the other address
                addresses.append(p.work_email if first == p.personal_email else p.personal_email)
            subscriptions.extend((p.index, a) for a in addresses)
            known[p.index].update(addresses)

    # Shared company mailboxes subscribe too; whoever signed up is the person behind it.
    employees: dict[int, list[int]] = {}
    for p in pop.people:
        employees.setdefault(p.account, []).append(p.index)
    for acc in pop.accounts:
        staff = employees.get(acc.index)
        if acc.role_email and staff and rnd.random() < 0.8:
            subscriptions.append((rnd.choice(staff), acc.role_email))

    _crm_a(rng, out, pop, a_cols, a_time, a_owner)
    _crm_b(rng, out, pop, b_cols, b_time, b_owner)
    _marketing(rng, rnd, out, pop, subscriptions, window)
    out.known_emails = [sorted(s) for s in known]
    return out


def _crm_a(
    rng: np.random.Generator,
    out: Identities,
    pop: Population,
    columns: Columns,
    updated: list[int],
    owner: list[int],
) -> None:
    ids = shuffled_ids(rng, "SFC-", len(owner))
    # The oldest record of a person is the one the web shop logs them in with.
    oldest: dict[int, tuple[int, str]] = {}
    for contact_id, person, ts in zip(ids, owner, updated, strict=True):
        if person not in oldest or (ts, contact_id) < oldest[person]:
            oldest[person] = (ts, contact_id)
        out.ground_truth.append(("crm_a_contacts", contact_id, pop.people[person].person_id))
    for person, (_, contact_id) in oldest.items():
        out.primary_contact[person] = contact_id
    layout = ("contact_id", "account_id", "first_name", "last_name", "email", "phone", "city")
    out.tables["crm_a_contacts"] = _finish(
        rng, ids, columns, {"updated_at": updated}, (*layout, "updated_at", "event_id"), "sfc-ev-"
    )


def _crm_b(
    rng: np.random.Generator,
    out: Identities,
    pop: Population,
    columns: Columns,
    created: list[int],
    owner: list[int],
) -> None:
    ids = shuffled_ids(rng, "HS-", len(owner), width=7)
    for lead_id, person in zip(ids, owner, strict=True):
        out.ground_truth.append(("crm_b_leads", lead_id, pop.people[person].person_id))
    layout = ("lead_id", "first_name", "last_name", "email", "phone", "company", "created_at")
    out.tables["crm_b_leads"] = _finish(
        rng, ids, columns, {"created_at": created}, (*layout, "event_id"), "hs-ev-"
    )


def _marketing(
    rng: np.random.Generator,
    rnd: random.Random,
    out: Identities,
    pop: Population,
    subscriptions: list[tuple[int, str]],
    window: Window,
) -> None:
    ids = shuffled_ids(rng, "MK-", len(subscriptions), width=7)
    # Skewed to the start of the window so most subscribers receive most campaigns.
    skew = rng.random(len(subscriptions)) ** 3
    since = window.start_us + (skew * window.span_us).astype(np.int64)
    columns: Columns = {"email": [], "first_name": []}
    for sub_id, (person, address), ts in zip(ids, subscriptions, since.tolist(), strict=True):
        p = pop.people[person]
        email = noise.email(rnd, address, MARKETING_NOISE)
        columns["email"].append(email)
        columns["first_name"].append(
            _given_name(rnd, p, MARKETING_NOISE, 0.0) if rnd.random() < 0.85 else None
        )
        out.subscribers.append(Subscriber(sub_id, email, person, ts))
        out.ground_truth.append(("marketing_contacts", sub_id, p.person_id))
    layout = ("subscriber_id", "email", "first_name", "subscribed_at", "event_id")
    out.tables["marketing_contacts"] = _finish(
        rng, ids, columns, {"subscribed_at": since.tolist()}, layout, "mk-ev-"
    )
