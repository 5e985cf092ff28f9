"""String noise applied to identity fields, the way real CRM data entry corrupts them.

Each source system gets a :class:`NoiseProfile`: a sales rep typing into the CRM makes different
mistakes than a prospect filling in a web form. These functions work on one value at a time with
a :class:`random.Random` because identity records are few (about one per person) and the logic is
branchy; the large event tables never go through here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Phone layouts seen in the wild for the same North-American number. ``{a}`` area code,
# ``{e}`` exchange, ``{l}`` line.
PHONE_STYLES: dict[str, str] = {
    "intl_dash": "+1 {a}-{e}-{l}",
    "paren": "({a}) {e} {l}",
    "plain": "{a}{e}{l}",
    "zero_zero": "001-{a}-{e}-{l}",
    "dots": "{a}.{e}.{l}",
    "e164": "+1{a}{e}{l}",
}


@dataclass(frozen=True)
class NoiseProfile:
    """How one source system corrupts identity fields (all values are probabilities)."""

    nickname: float  # use a nickname instead of the canonical first name
    typo: float  # per name field: one adjacent swap or one dropped character
    upper: float  # per name field: ALL CAPS
    lower: float  # per name field: all lower case
    whitespace: float  # per field: stray leading/trailing/inner spaces
    missing_email: float
    missing_phone: float
    email_case: float  # address typed with capitals ("John.Smith@Acme.com")
    email_typo: float  # one character dropped from the local part
    phone_styles: tuple[str, ...]  # keys of PHONE_STYLES this source produces


def typo(rng: random.Random, value: str) -> str:
    """Swap two adjacent characters or drop one; short values are returned unchanged."""
    if len(value) < 4:
        return value
    # Avoid the first character: people rarely mistype it, and it keeps the value recognisable.
    pos = rng.randrange(1, len(value) - 1)
    if rng.random() < 0.5:
        return value[:pos] + value[pos + 1] + value[pos] + value[pos + 2 :]
    return value[:pos] + value[pos + 1 :]


def whitespace(rng: random.Random, value: str) -> str:
    """Add a stray space before, after, or inside the value."""
    kind = rng.randrange(3)
    if kind == 0:
        return " " + value
    if kind == 1:
        return value + "  "
    return value.replace(" ", "  ", 1) if " " in value else value + " "


def name(rng: random.Random, value: str, profile: NoiseProfile, typo_boost: float = 0.0) -> str:
    """A person or city name as the source system stores it."""
    if rng.random() < profile.typo + typo_boost:
        value = typo(rng, value)
    u = rng.random()
    if u < profile.upper:
        value = value.upper()
    elif u < profile.upper + profile.lower:
        value = value.lower()
    if rng.random() < profile.whitespace:
        value = whitespace(rng, value)
    return value


def email(rng: random.Random, address: str, profile: NoiseProfile) -> str:
    """An (always lower-case, canonical) address as the source system stores it."""
    local, _, domain = address.partition("@")
    if rng.random() < profile.email_typo:
        local = typo(rng, local)
    if rng.random() < profile.email_case:
        # Title-case each dot-separated part, as people do when typing their own name.
        local = ".".join(part.capitalize() for part in local.split("."))
        domain = domain.capitalize()
    value = f"{local}@{domain}"
    if rng.random() < profile.whitespace:
        value = whitespace(rng, value)
    return value


def phone(rng: random.Random, digits: str, profile: NoiseProfile) -> str:
    """Format a 10-digit number in one of the source's layouts."""
    style = PHONE_STYLES[rng.choice(profile.phone_styles)]
    return style.format(a=digits[:3], e=digits[3:6], l=digits[6:])


def company(rng: random.Random, value: str, legal_forms: tuple[str, ...]) -> str:
    """A company name as a lead types it: sometimes with a legal form, lower case or squashed."""
    u = rng.random()
    if u < 0.25:
        value = f"{value} {rng.choice(legal_forms)}"
    elif u < 0.35:
        value = value.replace(" ", "")
    v = rng.random()
    if v < 0.15:
        value = value.lower()
    elif v < 0.2:
        value = value.upper()
    return value
