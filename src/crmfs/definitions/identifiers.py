"""Identifier kinds: which source fields say who an event is about, and how strongly."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from crmfs.definitions.types import FieldType
from crmfs.errors import DefinitionError

# Columns the identity step adds to the events of sources that declare identifiers (user
# fields cannot start with "_"): the golden id each event resolved to when it was ingested,
# and the identity record (the source's distinct set of identifier values) it belongs to.
GOLDEN_ID = "_golden_id"
IDENTITY_RECORD = "_identity_record"


class IdentifierKind(StrEnum):
    """What an identifier field holds. Strong kinds name one person (or so the source claims)
    and link records by exact match of their normalized values; weak kinds only add evidence
    to a probabilistic match."""

    EMAIL = "email"
    PHONE = "phone"
    CRM_CONTACT_ID = "crm_contact_id"
    MARKETING_LEAD_ID = "marketing_lead_id"
    EXTERNAL_ID = "external_id"
    COOKIE_ID = "cookie_id"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    FULL_NAME = "full_name"
    ADDRESS = "address"
    POSTCODE = "postcode"
    CITY = "city"
    DATE_OF_BIRTH = "date_of_birth"
    COMPANY = "company"
    # The CRM account (company record) a contact belongs to: weak, an organisation the
    # probabilistic layer learns from the addresses of the account's contacts.
    ACCOUNT_ID = "account_id"

    @property
    def is_strong(self) -> bool:
        return self in _STRONG

    @property
    def field_types(self) -> tuple[FieldType, ...]:
        """The field types an identifier of this kind may have."""
        if self is IdentifierKind.DATE_OF_BIRTH:
            return (FieldType.STRING, FieldType.TIMESTAMP)
        if self in _ID_KINDS or self is IdentifierKind.ACCOUNT_ID:
            return (FieldType.STRING, FieldType.INT)
        return (FieldType.STRING,)


_ID_KINDS = frozenset(
    {
        IdentifierKind.CRM_CONTACT_ID,
        IdentifierKind.MARKETING_LEAD_ID,
        IdentifierKind.EXTERNAL_ID,
        IdentifierKind.COOKIE_ID,
    }
)
_STRONG = _ID_KINDS | {IdentifierKind.EMAIL, IdentifierKind.PHONE}


def coerce_identifiers(
    label: str, identifiers: Mapping[str, IdentifierKind | str], schema: Mapping[str, FieldType]
) -> dict[str, IdentifierKind]:
    """``identifiers`` (field -> kind) checked against the source's schema."""
    if not isinstance(identifiers, Mapping):
        raise DefinitionError(label, "identifiers", "must map field names to identifier kinds")
    checked: dict[str, IdentifierKind] = {}
    valid = ", ".join(k.value for k in IdentifierKind)
    for name, raw in identifiers.items():
        where = f"identifiers.{name}"
        if name not in schema:
            raise DefinitionError(label, where, f"{name!r} is not in the schema")
        try:
            kind = IdentifierKind(str(raw))
        except ValueError:
            raise DefinitionError(label, where, f"kind {raw!r} is not one of {valid}") from None
        if schema[name] not in kind.field_types:
            allowed = " or ".join(t.value for t in kind.field_types)
            raise DefinitionError(
                label, where, f"a {kind.value} must be a {allowed} field, not {schema[name].value}"
            )
        checked[name] = kind
    return checked
