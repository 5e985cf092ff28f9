"""The ground-truth world: real people, the companies they work for, and their tastes.

Source tables are then *views* of this world through noisy systems (see ``sources.py``), and the
event tables are the behaviour of these people (see ``web.py`` and ``engagement.py``). Because
every record is derived from a known person, the ground-truth mapping is exact by construction.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass

import numpy as np

from crmfs.synthetic import names
from crmfs.synthetic.common import F64, I64, py_random

# Persons per account: a 20k-person world has 2k companies, enough for several people to share
# a company (and its role mailbox) without every company being huge.
PEOPLE_PER_ACCOUNT = 10
HOUSEHOLD_RATE = 0.12  # chance that a person starts a multi-person household
ROLE_MAILBOX_RATE = 0.3  # share of companies whose staff sometimes give the shared mailbox
# Work address conventions; each company uses one, as real mail servers do.
_WORK_PATTERNS = ("{f}.{l}", "{f}{l}", "{i}{l}", "{f}")
_PERSONAL_PATTERNS = ("{f}.{l}", "{f}{l}", "{i}{l}", "{f}_{l}", "{f}.{l}{n}", "{l}.{f}")
# Characters NFKD does not decompose into ASCII.
_ASCII_FOLD = str.maketrans({"ø": "o", "ß": "ss", "æ": "ae", "ł": "l", "đ": "d"})


@dataclass(frozen=True, slots=True)
class Account:
    """A company (B2B account)."""

    index: int
    account_id: str
    name: str
    domain: str
    industry: str
    role_email: str | None  # shared mailbox ("info@domain") several employees give out


@dataclass(frozen=True, slots=True)
class Person:
    """One real human. ``person_id`` is what identity resolution should recover."""

    index: int
    person_id: str
    first_name: str  # canonical ("Robert")
    nicknames: tuple[str, ...]  # ("Bob", "Rob", "Bobby")
    goes_by: str  # the first name this person usually gives
    last_name: str
    city: int  # index into names.CITIES
    mobile: str  # 10 digits, unique to the person
    household_phone: str | None  # 10 digits, shared with the rest of the household
    account: int  # employer (index into Population.accounts)
    work_email: str
    personal_email: str


@dataclass(frozen=True)
class Population:
    """All people and companies, plus per-person behavioural traits as numpy arrays."""

    people: list[Person]
    accounts: list[Account]
    activity: F64  # relative web activity, mean 1, heavy-tailed
    engagement: F64  # probability of opening a marketing email
    conversion: F64  # probability that a session with a cart ends in a purchase
    category_pref: F64  # (people, categories), rows sum to 1


def ascii_slug(value: str) -> str:
    """Lower-case ASCII letters and digits only: "O'Brien" -> "obrien", "Müller" -> "muller"."""
    folded = unicodedata.normalize("NFKD", value.lower().translate(_ASCII_FOLD))
    return "".join(ch for ch in folded if ch.isascii() and ch.isalnum())


def _unique(address: str, used: set[str]) -> str:
    """``address``, or ``local2@domain``, ``local3@domain``... if it is already taken."""
    local, _, domain = address.partition("@")
    candidate, k = address, 1
    while candidate in used:
        k += 1
        candidate = f"{local}{k}@{domain}"
    used.add(candidate)
    return candidate


def _address(pattern: str, first: str, last: str, number: int, domain: str) -> str:
    f, ln = ascii_slug(first), ascii_slug(last)
    return pattern.format(f=f, l=ln, i=f[:1], n=number) + "@" + domain


def build_accounts(rnd: random.Random, n: int) -> list[Account]:
    """``n`` companies with distinct names and domains."""
    cores = list(names.COMPANY_CORES)
    grid = [(p, c) for p in names.COMPANY_PREFIXES for c in cores]
    rnd.shuffle(grid)
    accounts: list[Account] = []
    for i in range(n):
        prefix, core = grid[i % len(grid)]
        wrap = i // len(grid)
        suffix = names.COMPANY_WRAP_SUFFIXES[wrap % len(names.COMPANY_WRAP_SUFFIXES)]
        if wrap >= len(names.COMPANY_WRAP_SUFFIXES):
            suffix += f" {wrap // len(names.COMPANY_WRAP_SUFFIXES) + 1}"
        name = f"{prefix} {core}{suffix}"
        # The wrap number is part of the domain so domains stay unique even for similar names.
        domain = ascii_slug(name) + rnd.choice(names.COMPANY_TLDS)
        role = None
        if i == 0:
            # The largest employer always has an info@ mailbox, so that every data set, however
            # small, contains an address shared by several people.
            role = f"info@{domain}"
        elif rnd.random() < ROLE_MAILBOX_RATE:
            role = f"{rnd.choice(names.ROLE_LOCALS)}@{domain}"
        accounts.append(
            Account(
                index=i,
                account_id=f"ACC-{i + 1:05d}",
                name=name,
                domain=domain,
                industry=names.COMPANY_CORES[core],
                role_email=role,
            )
        )
    return accounts


def _phones(rng: np.random.Generator, area_codes: list[str]) -> list[str]:
    """One distinct 10-digit number per area code given (exchange 200-999)."""
    subscriber = rng.integers(2_000_000, 10_000_000, size=len(area_codes), dtype=np.int64)
    numbers = [f"{a}{int(s)}" for a, s in zip(area_codes, subscriber, strict=True)]
    seen: set[str] = set()
    for i, number in enumerate(numbers):
        # Collisions are rare; redraw rather than let two strangers share a number by accident,
        # which would make the shared-phone signal ambiguous in the ground truth.
        while number in seen:
            number = f"{area_codes[i]}{int(rng.integers(2_000_000, 10_000_000))}"
        seen.add(number)
        numbers[i] = number
    return numbers


def build_population(rng: np.random.Generator, scale: int, n_categories: int) -> Population:
    """Create ``scale`` people, their employers and households."""
    rnd = py_random(rng)
    n_accounts = max(5, scale // PEOPLE_PER_ACCOUNT)
    accounts = build_accounts(rnd, n_accounts)
    work_pattern = [rnd.choice(_WORK_PATTERNS) for _ in accounts]
    # Zipf-ish company sizes: a few large employers, a long tail of small ones.
    size_weight = 1.0 / np.arange(1, n_accounts + 1) ** 0.8
    employer: I64 = rng.choice(n_accounts, size=scale, p=size_weight / size_weight.sum())

    first_names = list(names.FIRST_NAMES)
    firsts: list[str] = []
    lasts: list[str] = []
    cities: list[int] = []
    household: list[int] = []  # household number, or -1 for people living alone
    while len(firsts) < scale:
        size = rnd.choice((2, 2, 3, 4)) if rnd.random() < HOUSEHOLD_RATE else 1
        size = min(size, scale - len(firsts))
        last = rnd.choice(names.SURNAMES)
        city = rnd.randrange(len(names.CITIES))
        hh = len(firsts) if size > 1 else -1
        for _ in range(size):
            firsts.append(rnd.choice(first_names))
            # Most, not all, household members share a surname.
            lasts.append(last if rnd.random() < 0.75 else rnd.choice(names.SURNAMES))
            cities.append(city)
            household.append(hh)

    area = [names.CITIES[c][1] for c in cities]
    mobiles = _phones(rng, area)
    landline_of: dict[int, str] = {}
    hh_ids = sorted({h for h in household if h >= 0})
    landlines = _phones(rng, [area[h] for h in hh_ids])
    # Landlines must not collide with mobiles either.
    mobile_set = set(mobiles)
    for h, number in zip(hh_ids, landlines, strict=True):
        while number in mobile_set:
            number = f"{area[h]}{int(rng.integers(2_000_000, 10_000_000))}"
        mobile_set.add(number)
        landline_of[h] = number

    used: set[str] = set()
    people: list[Person] = []
    for i in range(scale):
        first, last = firsts[i], lasts[i]
        nicks = names.FIRST_NAMES[first]
        goes_by = rnd.choice(nicks) if nicks and rnd.random() < 0.3 else first
        acc = accounts[int(employer[i])]
        work = _address(work_pattern[acc.index], goes_by, last, 0, acc.domain)
        personal = _address(
            rnd.choice(_PERSONAL_PATTERNS),
            first if rnd.random() < 0.6 else goes_by,
            last,
            rnd.randrange(1, 99),
            rnd.choice(names.FREEMAIL_DOMAINS),
        )
        people.append(
            Person(
                index=i,
                person_id=f"P-{i + 1:06d}",
                first_name=first,
                nicknames=nicks,
                goes_by=goes_by,
                last_name=last,
                city=cities[i],
                mobile=mobiles[i],
                household_phone=landline_of.get(household[i]),
                account=acc.index,
                work_email=_unique(work, used),
                personal_email=_unique(personal, used),
            )
        )

    activity = rng.lognormal(0.0, 0.9, size=scale)
    # Small Dirichlet concentration: most people care about two or three categories, which is
    # the structure a recommender should be able to learn.
    pref = rng.dirichlet(np.full(n_categories, 0.3), size=scale)
    return Population(
        people=people,
        accounts=accounts,
        activity=activity / activity.mean(),
        engagement=rng.beta(2.0, 5.0, size=scale),
        conversion=rng.beta(2.0, 3.0, size=scale),
        category_pref=pref,
    )
