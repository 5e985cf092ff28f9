"""The columns the probabilistic layer compares for an identity record, and conflicts."""

from __future__ import annotations

from crmfs.definitions import IdentifierKind as K
from crmfs.identity.deterministic import IdentityRecord
from crmfs.identity.lexicon import Lexicon
from crmfs.identity.match_columns import columns_of, conflict, is_role_mailbox, phone_area
from crmfs.identity.normalize import normalize


def _record(**values: str) -> IdentityRecord:
    keys = frozenset(
        (kind, value)
        for name, raw in values.items()
        if (value := normalize(kind := K(name), raw)) is not None
    )
    return IdentityRecord("r", 0, keys)


def test_columns_read_names_from_the_address_and_the_company_from_its_domain() -> None:
    spelt = columns_of(_record(email="Jane.Doe@acmedata.com", phone="(415) 555-0132"))
    assert (spelt["first"], spelt["last"], spelt["initial"]) == ("jane", "doe", "d")
    assert spelt["company"] == "acmedata"
    assert spelt["domain"] == "acmedata"
    assert spelt["personal_email"] is None  # an address at work
    free = columns_of(_record(email="jane.doe@gmail.com"))
    assert (free["company"], free["personal_email"]) == (None, "janedoe@gmail.com")
    assert spelt["phone_area"] == phone_area("+14155550132")
    assert spelt["phone_area"]  # the package's geocoding names San Francisco
    declared = columns_of(_record(first_name="Ann", last_name="De Luca", company="Acme Data, Inc."))
    assert (declared["last"], declared["company"]) == ("deluca", "acmedata")
    assert columns_of(_record(email="info@acmedata.com"))["work_mailbox"] is None


def test_conflicts_are_different_names_or_different_mailboxes_at_one_domain() -> None:
    ann = columns_of(_record(first_name="Ann", last_name="Lee", email="ann.lee@acme.com"))
    bob = columns_of(_record(first_name="Bob", last_name="Lee", email="bob.lee@acme.com"))
    typo = columns_of(_record(first_name="Ann", last_name="Lee", email="ann.le@acme.com"))
    namesake = columns_of(_record(first_name="Ann", last_name="Lee", email="ann.lee2@acme.com"))
    assert conflict(ann, bob)
    assert not conflict(ann, typo)  # one typo apart: one mailbox
    assert conflict(ann, namesake)  # a digit tells two mailboxes apart


def test_city_nicknames_are_spelt_out() -> None:
    assert [normalize(K.CITY, v) for v in ("Philly", "NYC", "Bklyn", "Boston")] == [
        "philadelphia",
        "new york",
        "brooklyn",
        "boston",
    ]


def test_names_conflict_in_neither_order_and_role_mailboxes_tolerate_a_slip() -> None:
    spelt = columns_of(_record(email="garcia.omar@letterpost.org"))
    declared = columns_of(_record(first_name="Omar", last_name="Garcia", email="og@acme.com"))
    assert not conflict(spelt, declared)  # garcia.omar read in the other order
    assert is_role_mailbox("info")
    assert is_role_mailbox("sles")  # sales, one slip
    assert not is_role_mailbox("jane.doe")
    shared = columns_of(_record(first_name="Ben", email="sles@zenith.com"))
    other = columns_of(_record(first_name="Ben", email="ben@zenith.com"))
    assert shared["work_mailbox"] is None
    assert not conflict(shared, other)


def _crm() -> list[IdentityRecord]:
    """Contacts of two accounts at their work domains, and leads of several companies who
    gave addresses at one mail service (``postbox.net``) the lexicon has to learn."""
    rows: list[dict[str, str]] = [
        {"first_name": "Hugo", "last_name": "Singh", "email": "hugo@acme.io", "account_id": "A-1"},
        {"first_name": "Nora", "last_name": "Reed", "email": "nreed@acme.io", "account_id": "A-1"},
        {"first_name": "Nora", "last_name": "Vargas", "account_id": "A-1"},
        {"first_name": "Ann", "last_name": "Lee", "email": "ann@zenith.com", "account_id": "A-2"},
    ]
    for k, company in enumerate(("Acme", "Zenith", "Falcon", "Cedar")):
        rows.append({"last_name": f"Lead{k}", "company": company, "email": f"l{k}@postbox.net"})
    return [IdentityRecord(f"r{k}", k, _record(**row).keys) for k, row in enumerate(rows)]


def test_the_lexicon_learns_names_mail_services_and_accounts_organisations() -> None:
    lexicon = Lexicon.learn(_crm())
    assert {"hugo", "nora", "ann"} <= lexicon.first_names
    assert {"singh", "reed", "vargas"} <= lexicon.last_names
    assert "postbox" in lexicon.mail_providers  # four companies' people, none with half
    assert "gmail" in lexicon.mail_providers  # a public one, known without data
    assert "acme" not in lexicon.mail_providers
    assert lexicon.account_organisations == {"A-1": "acme", "A-2": "zenith"}
    assert Lexicon.from_json(lexicon.to_json()) == lexicon
    assert Lexicon.from_json(None) == Lexicon()


def test_columns_use_the_lexicon() -> None:
    lexicon = Lexicon.learn(_crm())
    # A contact without an address has the company its account's contacts write from.
    vargas = columns_of(_record(first_name="Nora", last_name="Vargas", account_id="A-1"), lexicon)
    assert vargas["company"] == "acme"
    # Addresses at the learned mail service are personal and name no company.
    lead = columns_of(_record(email="hugosingh@postbox.net"), lexicon)
    assert (lead["first"], lead["last"], lead["company"]) == ("hugo", "singh", None)
    assert lead["personal_email"] == "hugosingh@postbox.net"
    assert columns_of(_record(email="hugosingh@postbox.net"))["last"] is None  # no lexicon
    # Last name first, told by the names seen; an initial and a known last name.
    assert columns_of(_record(email="reed.nora@postbox.net"), lexicon)["last"] == "reed"
    assert columns_of(_record(email="nvargas@postbox.net"), lexicon)["last"] == "vargas"
