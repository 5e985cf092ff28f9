"""Identifier normalization: values meant as the same identifier compare equal."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from crmfs.definitions import IdentifierKind
from crmfs.identity.normalize import (
    email_name_parts,
    email_organisation,
    first_name_forms,
    normalize,
    normalize_address,
    normalize_company,
    normalize_date_of_birth,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_postcode,
    normalize_values,
    plain_text,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Jane.Doe@Example.COM", "jane.doe@example.com"),
        ("  jane.doe@example.com ", "jane.doe@example.com"),
        ("Jane.Doe+news@gmail.com", "janedoe@gmail.com"),
        ("j.a.n.e.doe@googlemail.com", "janedoe@gmail.com"),
        ("jane+crm@outlook.com", "jane@outlook.com"),
        ("jane.doe@outlook.com", "jane.doe@outlook.com"),  # dots count at Outlook
        ("jane+sales@acme.com", "jane+sales@acme.com"),  # unknown server: tag kept
        ("info@acme.com.", "info@acme.com"),
    ],
)
def test_emails(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "jane", "jane@", "@acme.com", "a b@acme.com", "a@b"])
def test_what_is_not_an_email_address(raw: str) -> None:
    assert normalize_email(raw) is None


def test_plus_tag_alone_is_no_address() -> None:
    assert normalize_email("+news@gmail.com") is None


@pytest.mark.parametrize(
    "raw",
    ["(415) 555-0132", "415.555.0132", "+1 415 555 0132", "0014155550132", "4155550132"],
)
def test_phone_layouts_meet_in_e164(raw: str) -> None:
    assert normalize_phone(raw, default_region="US") == "+14155550132"


def test_phone_extension_is_dropped_and_region_applies() -> None:
    assert normalize_phone("415-555-0132 ext. 12") == "+14155550132"
    assert normalize_phone("020 7946 0018", default_region="GB") == "+442079460018"
    assert normalize_phone("+44 20 7946 0018", default_region="US") == "+442079460018"


@pytest.mark.parametrize("raw", ["", "n/a", "12", "phone me"])
def test_what_is_not_a_phone_number(raw: str) -> None:
    assert normalize_phone(raw) is None


def test_names_lose_case_accents_and_punctuation() -> None:
    assert normalize_name("  José  ÁLVAREZ ") == "jose alvarez"
    assert normalize_name("O'Brien") == "obrien"
    assert normalize_name("Mary-Jane") == "mary jane"
    assert normalize_name("J.R.") == "jr"
    assert normalize_name(" - ") is None
    assert plain_text("Zoë") == "zoe"


def test_nicknames_meet_their_given_names() -> None:
    assert first_name_forms("Bob") == {"bob", "robert"}
    assert first_name_forms("Robert") == {"robert"}
    assert first_name_forms("bob") & first_name_forms("ROBERT")
    assert "alexandra" in first_name_forms("Alex")
    assert "alexander" in first_name_forms("Alex")
    assert not first_name_forms("Bob") & first_name_forms("William")
    assert first_name_forms("") == frozenset()


def test_addresses_take_the_usual_abbreviations() -> None:
    assert normalize_address("12 North Main Street, Apt. 4") == "12 n main st apt 4"
    assert normalize_address("12 N. Main St apt 4") == "12 n main st apt 4"
    assert normalize_address("  ") is None


def test_postcodes_and_dates_of_birth() -> None:
    assert normalize_postcode("sw1a 1aa") == "SW1A1AA"
    assert normalize_postcode(2041) == "2041"
    assert normalize_date_of_birth("19560909") == "1956-09-09"
    assert normalize_date_of_birth("1956-09-09") == "1956-09-09"
    assert normalize_date_of_birth(date(1956, 9, 9)) == "1956-09-09"
    assert normalize_date_of_birth(datetime(1956, 9, 9, tzinfo=UTC)) == "1956-09-09"
    assert normalize_date_of_birth("09/09/1956") is None  # day and month could be swapped
    assert normalize_date_of_birth("19561309") is None


def test_normalize_dispatches_on_the_kind() -> None:
    assert normalize(IdentifierKind.EMAIL, "A@B.com") == "a@b.com"
    assert normalize(IdentifierKind.PHONE, "020 7946 0018", "GB") == "+442079460018"
    assert normalize(IdentifierKind.CRM_CONTACT_ID, " C-001 ") == "C-001"
    assert normalize(IdentifierKind.EXTERNAL_ID, 42) == "42"
    assert normalize(IdentifierKind.LAST_NAME, "Ødegård") == "odegard"
    assert normalize(IdentifierKind.DATE_OF_BIRTH, date(2001, 1, 2)) == "2001-01-02"
    assert normalize(IdentifierKind.COOKIE_ID, "") is None
    assert normalize(IdentifierKind.EMAIL, None) is None


@pytest.mark.parametrize(
    ("email", "first", "expected"),
    [
        ("nora.park@inboxly.com", "nora", ("nora", "park")),
        ("park_nora7@inboxly.com", "nora", ("nora", "park")),
        ("norapark@x.com", "nora", ("nora", "park")),
        ("robertrossi6@x.org", "bobby", ("robert", "rossi")),
        ("npark@acme.com", "nora", (None, "park")),
        ("nora@acme.com", "nora", ("nora", None)),
        ("castillo.robert@x.io", None, ("robert", "castillo")),
        ("info@acme.com", "nora", (None, None)),
        ("bob@acme.com", None, ("bob", None)),  # a known given name or nickname
        ("zxqv@acme.com", None, (None, None)),
        ("robertrossi@acme.com", None, ("robert", "rossi")),  # a known given name first
        ("roberto@acme.com", None, (None, None)),  # too little left for a last name
        (None, "nora", (None, None)),
    ],
)
def test_names_an_address_spells(
    email: str | None, first: str | None, expected: tuple[str | None, str | None]
) -> None:
    assert email_name_parts(email, first) == expected


def test_company_names_and_the_organisation_of_an_address() -> None:
    assert normalize_company("Horizon Travel, LLC") == normalize_company("HorizonTravel")
    assert normalize_company("Horizon Travel, LLC") == "horizontravel"
    assert normalize_company("LLC") == "llc"  # a legal form alone stays
    assert email_organisation("jane@horizontravel.co.uk") == "horizontravel"
    assert email_organisation("not an address") is None


def test_dates_of_birth_read_without_strptime_agree_with_it() -> None:
    # Eight digits take a fast path; what it refuses goes to strptime as before.
    assert normalize_date_of_birth("20000229") == "2000-02-29"
    assert normalize_date_of_birth("19000229") is None  # no 29 February in 1900
    assert normalize_date_of_birth(" 19560909 ") == "1956-09-09"
    assert normalize_date_of_birth("1956909") == "1956-09-09"  # strptime reads it so


def test_normalize_values_is_normalize_of_each_value() -> None:
    raw = ["Bob", None, "  bob ", "Ødegård", "", "Bob", 42]
    got = normalize_values(IdentifierKind.FIRST_NAME, raw)
    assert got == [normalize(IdentifierKind.FIRST_NAME, v) for v in raw]
    assert got[:3] == ["bob", None, "bob"]
    unhashable: list[object] = [["x"], "Jo"]
    assert normalize_values(IdentifierKind.EXTERNAL_ID, unhashable) == ["['x']", "Jo"]
    assert normalize_values(IdentifierKind.LAST_NAME, [float("nan"), "Lee"]) == [None, "lee"]
