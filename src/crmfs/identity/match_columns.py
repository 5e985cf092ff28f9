"""What the probabilistic layer compares for an identity record, and its default settings.

An identity record carries normalized identifiers (``IdentityRecord.keys``). The matcher
compares columns made from them: first and last name (or those the email address spells),
email and phone (which count even where the deterministic layer stopped trusting them, for
as much as their rarity says), the organisation an address's domain names, city, street
address, postcode and date of birth (a column a source does not declare is missing: no
evidence either way). Two
records **conflict** (their clusters never join) when their names name different people or
they hold different personal mailboxes at one organisation's domain.
"""

from __future__ import annotations

import functools

import phonenumbers
from rapidfuzz.distance import OSA

from crmfs.definitions import IdentifierKind as K
from crmfs.identity.blocking import BlockingRule
from crmfs.identity.clustering import LinkPolicy
from crmfs.identity.deterministic import IdentityRecord, plain_names_conflict
from crmfs.identity.lexicon import Lexicon
from crmfs.identity.matcher import MatchSettings
from crmfs.identity.normalize import ROLE_MAILBOXES, email_name_parts, email_organisation
from crmfs.identity.probabilistic import Comparison

Columns = dict[str, str | None]
DEFAULT_LEXICON = Lexicon()

MATCH_COLUMNS = (
    "first", "last", "email", "personal_email", "phone", "company", "domain", "city", "initial",
    "phone_area", "address", "postcode", "dob",
)  # fmt: skip
DEFAULT_SETTINGS = MatchSettings(
    comparisons=(
        Comparison("first", "first", "first_name", (0.92, 0.8), term_frequency=True),
        Comparison("last", "last", "jaro_winkler", (0.92, 0.8), term_frequency=True),
        Comparison("company", "company", "jaro_winkler", (0.9,), term_frequency=True),
        Comparison("domain", "domain", "exact", term_frequency=True),
        Comparison("city", "city", "jaro_winkler", (0.9,), term_frequency=True),
        Comparison("address", "address", "jaro_winkler", (0.9, 0.75)),
        Comparison("postcode", "postcode", "jaro_winkler", (0.8,), term_frequency=True),
        Comparison("dob", "dob", "date"),
        # A person holds several addresses and numbers: one another record also holds is
        # evidence for, different ones none against (on the synthetic CRM's seed 0 the
        # choice is even: exact-cluster F1 0.799 this way, 0.798 with phones against).
        Comparison("email", "email", "exact", term_frequency=True, agreement_only=True),
        Comparison("phone", "phone", "exact", term_frequency=True, agreement_only=True),
        # Addresses at mail providers, different ones counted against: how rarely one
        # person's records hold two (or one typed with a slip) is learned from the data.
        Comparison("personal_email", "personal_email", "jaro_winkler", (0.95,)),
        # Where a phone number is from (its geographic area code).
        Comparison("phone_area", "phone_area", "exact", term_frequency=True),
    ),
    rules=(
        BlockingRule(("last",)),
        BlockingRule(("first", "domain")),
        BlockingRule(("first", "company")),
        # Typos in both names: colleagues whose last names start alike.
        BlockingRule(("company", "initial")),
        # A typo in the last name still meets, unless in its first letter.
        BlockingRule(("first", "initial")),
        BlockingRule(("dob",)),
        BlockingRule(("postcode",)),
    ),
    max_block=1000,
)
# Chosen on the synthetic CRM's seed 0 at scale 2,000 (never on the set scored; the bench
# scores seed 1): exact-cluster F1 0.77 at 0.2 and 0.3, 0.73 at 0.5.
DEFAULT_POLICY = LinkPolicy(threshold=0.1, floor=0.005)


def _key(record: IdentityRecord, kind: K) -> str | None:
    return next((value for k, value in sorted(record.keys) if k is kind), None)


def columns_of(record: IdentityRecord, lexicon: Lexicon = DEFAULT_LEXICON) -> Columns:
    """The matcher's columns of one record (plus ``work_mailbox`` for ``conflict``), with
    what ``lexicon`` learned from the data: the names an address spells, which domains are
    mail providers (an address anywhere else names the record's company), and CRM accounts'
    organisations."""
    email = _key(record, K.EMAIL)
    first, last = _key(record, K.FIRST_NAME), _key(record, K.LAST_NAME)
    spelt_first, spelt_last = email_name_parts(
        email, first, lexicon.first_names, lexicon.last_names
    )
    local, _, domain = (email or "").rpartition("@")
    personal = not is_role_mailbox(local)
    last = last or spelt_last
    phone = _key(record, K.PHONE)
    organisation = email_organisation(email)
    provider = organisation in lexicon.mail_providers
    company = _key(record, K.COMPANY) or lexicon.organisation(
        organisation, _key(record, K.ACCOUNT_ID)
    )
    return {
        "first": first or spelt_first,
        # Particles typed apart or together (``de luca``, ``deluca``) compare as one word.
        "last": last.replace(" ", "") if last else None,
        "email": email,
        "personal_email": email if provider and personal else None,
        "phone": phone,
        "company": company,
        "domain": organisation,
        "city": _key(record, K.CITY),
        "initial": last[0] if last else None,
        "phone_area": phone_area(phone),
        "address": _key(record, K.ADDRESS),
        "postcode": _key(record, K.POSTCODE),
        "dob": _key(record, K.DATE_OF_BIRTH),
        "work_mailbox": email if email and domain and personal else None,  # not info@ ...
    }


@functools.lru_cache(maxsize=65_536)
def phone_area(phone: str | None) -> str | None:
    """The geographic area code of an E.164 number with its country (``+14155550132`` ->
    ``+1 415``), by libphonenumber's numbering plans; None for numbers without one (mobiles
    in many countries). Numbers from one area are likely from one place; libphonenumber's
    place names would cost ~100 MB of memory for little more."""
    if not phone:
        return None
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return None
    digits = phonenumbers.length_of_geographical_area_code(number)
    if not digits:
        return None
    return f"+{number.country_code} {str(number.national_number)[:digits]}"


_ROLES = sorted(ROLE_MAILBOXES)


@functools.lru_cache(maxsize=65_536)
def is_role_mailbox(local: str) -> bool:
    """Whether an address's local part names a function (``info``, ``sales``), also typed
    with one slip (``sles``, ``cnotact``) in names of four letters or more."""
    local = local.rstrip("0123456789")
    if local in ROLE_MAILBOXES:
        return True
    return len(local) >= 3 and any(
        len(role) >= 4 and OSA.distance(local, role) <= 1 for role in _ROLES
    )


def conflict(a: Columns, b: Columns) -> bool:
    """Whether two records name different people (their clusters never join); names read
    in either order (an address spells ``smith.jane`` as often as ``jane.smith``)."""
    if plain_names_conflict(a["first"], a["last"], b["first"], b["last"]) and plain_names_conflict(
        a["first"], a["last"], b["last"], b["first"]
    ):
        return True
    return _mailboxes_differ(a["work_mailbox"], b["work_mailbox"])


def _mailboxes_differ(a: str | None, b: str | None) -> bool:
    """Two personal addresses at one domain that are not one typo apart: an organisation
    gives each person one mailbox and tells namesakes apart by a digit, and one person
    rarely keeps two mailboxes at one provider."""
    if not (a and b) or a == b:
        return False
    (local_a, _, domain_a), (local_b, _, domain_b) = a.rpartition("@"), b.rpartition("@")
    if domain_a != domain_b:
        return False
    digits = [c for c in local_a if c.isdigit()] != [c for c in local_b if c.isdigit()]
    return digits or OSA.distance(local_a, local_b) > 1
