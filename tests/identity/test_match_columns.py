"""The columns the probabilistic layer compares for an identity record, and conflicts."""

from __future__ import annotations

from crmfs.definitions import IdentifierKind as K
from crmfs.identity.deterministic import IdentityRecord
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
    spelt = columns_of(
        _record(email="Jane.Doe@acmedata.com", phone="(415) 555-0132"),
        organisations={"acmedata.com": "acmedata"},
    )
    assert (spelt["first"], spelt["last"], spelt["initial"]) == ("jane", "doe", "d")
    assert spelt["company"] == "acmedata"
    assert spelt["domain"] == "acmedata"
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
