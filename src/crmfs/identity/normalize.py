"""Normalized identifier values: two values meant as the same identifier compare equal.

Every function returns ``None`` for a value that cannot serve as an identifier (empty, not
an email address, not a possible phone number ...): such a value links nothing.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable
from datetime import date, datetime

import phonenumbers

from crmfs.definitions import IdentifierKind
from crmfs.identity.nicknames import NICKNAMES, NICKNAMES_OF

# Mail providers whose addressing rules are published: ``dots`` when dots in the local part
# are ignored, ``plus`` when ``local+tag`` is delivered to ``local``; ``alias`` names the domain
# that another one is the same mailbox as. Unknown domains keep their local part as typed
# (case aside): a company server may well give ``a.b`` and ``ab`` to two people.
_DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}
_DOTS_IGNORED = frozenset({"gmail.com"})
_PLUS_TAGS = frozenset(
    {
        "gmail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "fastmail.com",
        "fastmail.fm",
        "proton.me",
        "protonmail.com",
    }
)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

# Address words and their usual abbreviations (USPS style), applied per word.
_ADDRESS_WORDS = {
    "street": "st",
    "str": "st",
    "avenue": "ave",
    "av": "ave",
    "road": "rd",
    "boulevard": "blvd",
    "drive": "dr",
    "lane": "ln",
    "court": "ct",
    "place": "pl",
    "square": "sq",
    "terrace": "ter",
    "parkway": "pkwy",
    "highway": "hwy",
    "circle": "cir",
    "crescent": "cres",
    "apartment": "apt",
    "unit": "apt",
    "suite": "ste",
    "floor": "fl",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
    "mount": "mt",
    "saint": "st",
}
_DOB_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d")
# ASCII punctuation: apostrophes and dots vanish (deleted by ``bytes.translate``), everything
# else that is not a letter or a digit becomes a space.
_ASCII_PLAIN = bytes(c if chr(c).isalnum() and c < 128 else 32 for c in range(256))
# Latin letters that Unicode does not decompose into a base letter and an accent.
_UNDECOMPOSED = str.maketrans(
    {"ø": "o", "æ": "ae", "œ": "oe", "ß": "ss", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
)


def plain_text(value: str) -> str:
    """Lower case without accents or punctuation, words separated by single spaces.

    Apostrophes and dots join their neighbours (``O'Brien`` -> ``obrien``, ``J.R.`` -> ``jr``);
    other punctuation separates words (``Mary-Jane`` -> ``mary jane``).
    """
    if value.isascii():  # the common case, at C speed
        plain = value.lower().encode().translate(_ASCII_PLAIN, b"'.")
        return " ".join(plain.decode().split())
    decomposed = unicodedata.normalize("NFKD", value.casefold()).translate(_UNDECOMPOSED)
    kept = []
    for char in decomposed:
        if unicodedata.combining(char) or char in "'’.":
            continue
        kept.append(char if char.isalnum() else " ")
    return " ".join("".join(kept).split())


def normalize_email(value: str) -> str | None:
    """``Jane.Doe+news@GoogleMail.com `` -> ``janedoe@gmail.com``; not an address: None."""
    text = value.strip().casefold()
    if not _EMAIL.fullmatch(text):
        return None
    local, _, domain = text.rpartition("@")
    domain = domain.rstrip(".")
    domain = _DOMAIN_ALIASES.get(domain, domain)
    if domain in _PLUS_TAGS:
        local = local.split("+", 1)[0]
    if domain in _DOTS_IGNORED:
        local = local.replace(".", "")
    return f"{local}@{domain}" if local else None


def normalize_phone(value: str | int, default_region: str = "US") -> str | None:
    """The number in E.164 (``+15551234567``), read with ``default_region`` when it has no
    country code; an extension is dropped. A leading ``00`` that the region does not dial
    abroad with (the US dials ``011``) is still read as the international prefix, as most of
    the world writes it. Not a possible number: None."""
    text = str(value).strip()
    if not text:
        return None
    number = _possible_number(text, default_region)
    if number is None and text.startswith("00"):
        number = _possible_number("+" + text[2:], default_region)
    if number is None:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _possible_number(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_possible_number(number) else None


def normalize_name(value: str) -> str | None:
    """A person's name as plain text (see ``plain_text``); nothing left: None."""
    return plain_text(value) or None


# Nicknames and abbreviations people type for large US cities (normalized forms).
CITY_NICKNAMES: dict[str, str] = {
    "nyc": "new york", "ny": "new york", "bklyn": "brooklyn", "sf": "san francisco",
    "la": "los angeles", "chi": "chicago", "chitown": "chicago", "atl": "atlanta",
    "pdx": "portland", "mpls": "minneapolis", "philly": "philadelphia", "phl": "philadelphia",
    "sd": "san diego", "pgh": "pittsburgh", "slc": "salt lake city", "dc": "washington",
    "nola": "new orleans", "vegas": "las vegas", "lv": "las vegas", "kc": "kansas city",
    "stl": "st louis", "saint louis": "st louis", "hou": "houston", "htx": "houston",
    "dfw": "dallas", "bos": "boston", "sea": "seattle", "den": "denver", "phx": "phoenix",
    "atx": "austin", "sj": "san jose", "sac": "sacramento", "cle": "cleveland",
    "cincy": "cincinnati", "indy": "indianapolis", "jax": "jacksonville", "msp": "minneapolis",
}  # fmt: skip


def normalize_city(value: str) -> str | None:
    """A city as a name (``normalize_name``), with common nicknames spelt out (``Philly``
    -> ``philadelphia``, ``NYC`` -> ``new york``)."""
    name = normalize_name(value)
    return CITY_NICKNAMES.get(name, name) if name else None


def first_name_forms(value: str) -> frozenset[str]:
    """The normalized first name and the given names it is a common nickname of
    (``Bob`` -> ``{"bob", "robert"}``): two first names may be the same person's when
    their forms meet."""
    name = plain_text(value)
    if not name:
        return frozenset()
    return frozenset({name, *NICKNAMES.get(name, ())})


@functools.lru_cache(maxsize=65_536)
def first_name_variants(value: str) -> frozenset[str]:
    """``first_name_forms`` and every nickname of those given names (``meg`` -> ``meg``,
    ``margaret``, ``peggy``, ``maggie`` ...): the names one person may be recorded under,
    to read an address's local part by and to tolerate a typo in a nickname (``frd``)."""
    forms = first_name_forms(value)
    return forms.union(*(NICKNAMES_OF.get(given, ()) for given in forms))


def normalize_address(value: str) -> str | None:
    """Plain text with the usual words abbreviated (``12 North Main Street, Apt. 4`` ->
    ``12 n main st apt 4``); nothing left: None."""
    words = [_ADDRESS_WORDS.get(word, word) for word in plain_text(value).split()]
    return " ".join(words) or None


def normalize_postcode(value: str | int) -> str | None:
    """Upper-case letters and digits only (``sw1a 1aa`` -> ``SW1A1AA``)."""
    text = "".join(char for char in str(value).upper() if char.isalnum())
    return text or None


def normalize_date_of_birth(value: str | date | datetime) -> str | None:
    """An ISO date (``1956-09-09``) from a date, a datetime or a string written
    ``YYYY-MM-DD``, ``YYYYMMDD`` or ``YYYY/MM/DD``; anything else: None (day-month orders
    are ambiguous)."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    if text.isascii() and text.isdigit() and len(text) == 8:  # YYYYMMDD, without strptime
        try:
            return date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
        except ValueError:
            pass  # strptime decides
    for layout in _DOB_FORMATS:
        try:
            return datetime.strptime(text, layout).date().isoformat()
        except ValueError:
            continue
    return None


def normalize_id(value: str | int) -> str | None:
    """An opaque id: surrounding whitespace removed, case kept; empty: None."""
    text = str(value).strip()
    return text or None


def normalize(kind: IdentifierKind, value: object, default_region: str = "US") -> str | None:
    """``value`` normalized as an identifier of ``kind``; None where it cannot serve as one.

    Text values are remembered (the last 65,536 distinct ones): names, cities and domains
    repeat a lot in CRM data."""
    if value is None:
        return None
    if isinstance(value, str):
        return _normalize_text(kind, value, default_region)
    return _normalize(kind, value, default_region)


def normalize_values(
    kind: IdentifierKind, values: Iterable[object], default_region: str = "US"
) -> list[str | None]:
    """``normalize`` of each of ``values``, each distinct value normalized once (a column of
    names, cities or dates repeats many of its values). A float NaN (a missing value of a
    data frame's column) is None too."""
    values = list(values)
    try:
        distinct = dict.fromkeys(values)
    except TypeError:  # an unhashable value: one at a time
        return [normalize(kind, value, default_region) for value in values]
    table = {
        value: None if value is None or value != value else _normalize(kind, value, default_region)
        for value in distinct
    }
    return list(map(table.__getitem__, values))


@functools.lru_cache(maxsize=65_536)
def _normalize_text(kind: IdentifierKind, value: str, default_region: str) -> str | None:
    return _normalize(kind, value, default_region)


def _normalize(kind: IdentifierKind, value: object, default_region: str) -> str | None:
    if kind is IdentifierKind.PHONE:
        return normalize_phone(str(value), default_region)
    if kind is IdentifierKind.DATE_OF_BIRTH and isinstance(value, date | datetime):
        return normalize_date_of_birth(value)
    return _TEXT_RULES.get(kind, normalize_id)(str(value))


# How text of each kind is normalized (phones need a region; other kinds are opaque ids).
_TEXT_RULES: dict[IdentifierKind, Callable[[str], str | None]] = {
    IdentifierKind.EMAIL: normalize_email,
    IdentifierKind.FIRST_NAME: normalize_name,
    IdentifierKind.LAST_NAME: normalize_name,
    IdentifierKind.FULL_NAME: normalize_name,
    IdentifierKind.CITY: normalize_city,
    IdentifierKind.ADDRESS: normalize_address,
    IdentifierKind.POSTCODE: normalize_postcode,
    IdentifierKind.DATE_OF_BIRTH: normalize_date_of_birth,
}


# Local parts of shared mailboxes, which name a function, not a person.
ROLE_MAILBOXES = frozenset(
    {
        "info", "sales", "contact", "office", "admin", "support", "hello", "team", "help",
        "marketing", "billing", "accounts", "enquiries", "inquiries", "hr", "jobs", "careers",
        "mail", "noreply", "no-reply", "webmaster", "service", "orders", "press",
    }
)  # fmt: skip
_LOCAL_SEPARATORS = re.compile(r"[._\-+]+")
# Legal forms dropped from company names (compared as plain text, last word only).
_LEGAL_FORMS = frozenset(
    {"inc", "llc", "ltd", "limited", "corp", "corporation", "co", "gmbh", "sa", "ag", "plc",
     "bv", "srl", "pty", "lp", "llp", "company"}
)  # fmt: skip


def email_name_parts(
    email: str | None,
    first_name: str | None = None,
    known_first: Collection[str] = (),
    known_last: Collection[str] = (),
) -> tuple[str | None, ...]:
    """The (first, last) names a normalized address's local part spells, where it does:
    ``jane.doe``, ``doe_jane``, ``janedoe`` or ``jdoe`` with ``first_name`` ``jane`` (or any
    nickname of it); digits at the end are dropped. Shared mailboxes (``info@``) spell
    nothing. A part that cannot be told is None.

    Given names are the nickname table's plus ``known_first``, last names ``known_last``
    (names seen in the data, ``identity.lexicon``). A two-word local part that does not
    contain ``first_name`` is read last name first when its second word is a given name and
    its first is not, or its first a last name and its second not (``reed.hannah``). Without
    ``first_name``, one word that is a given name is read as that first name, one that
    starts with one (at least three letters left) as that name and a last name
    (``aishafontaine``, a known last name preferred, else the longest given name), and an
    initial followed by a known last name as that initial and last name (``cchoi``)."""
    if not email or "@" not in email:
        return (None, None)
    local = email.partition("@")[0].rstrip("0123456789")
    if not local or local in ROLE_MAILBOXES:
        return (None, None)

    def given(word: str) -> bool:
        return word in _KNOWN_FIRST or word in known_first

    words = [w for w in _LOCAL_SEPARATORS.split(local) if w]
    forms = first_name_variants(first_name) if first_name else frozenset()
    if len(words) == 2:
        a, b = words
        if a in forms:
            return (a, b)
        if b in forms:
            return (b, a)
        if (given(b) and not given(a)) or (a in known_last and b not in known_last):
            return (b, a)
        return (a, b)
    if len(words) != 1:
        return (None, None)
    word = words[0]
    for form in sorted(forms, key=len, reverse=True):
        if word == form:
            return (form, None)
        if word.startswith(form) and len(word) - len(form) >= 2:
            return (form, word[len(form) :])
    if first_name:
        if word[0] == first_name[0] and len(word) >= 4:
            return (None, word[1:])  # an initial and the last name
        return (None, None)
    if given(word):
        return (word, None)  # a given name alone (``tim@``)
    if any(given(word[:size]) for size in range(len(word) - 1, len(word) - 3, -1)):
        return (None, None)  # a longer form of a given name (``roberto``), not two names
    splits = [
        (word[:size], word[size:]) for size in range(len(word) - 3, 2, -1) if given(word[:size])
    ]
    if splits:  # a given name and a last name run together
        return next((s for s in splits if s[1] in known_last), splits[0])
    if len(word) >= 4 and word[1:] in known_last:
        return (word[0], word[1:])  # an initial and a known last name
    return (None, None)


def normalize_company(value: str) -> str | None:
    """A company name as one squashed word without its legal form (``Acme Data, Inc.`` ->
    ``acmedata``), so that typed variants of one name compare equal."""
    words = plain_text(value).split()
    while len(words) > 1 and words[-1] in _LEGAL_FORMS:
        words.pop()
    return "".join(words) or None


_TEXT_RULES[IdentifierKind.COMPANY] = normalize_company


def email_organisation(email: str | None) -> str | None:
    """The organisation an address's domain names, as ``normalize_company`` writes it:
    ``jane@acmedata.co.uk`` -> ``acmedata``. Free mail providers name no organisation, but
    are not told apart here: weigh agreement by how common the value is (term frequencies)."""
    if not email or "@" not in email:
        return None
    labels = email.rpartition("@")[2].split(".")
    return labels[0] or None


_KNOWN_FIRST = frozenset(NICKNAMES) | frozenset(g for forms in NICKNAMES.values() for g in forms)
