"""Which columns of the synthetic CRM's tables identify people, and how.

Each identity table's record id column, its time column (when a record changed), and its
identifier columns with their kinds, for the demo, the identity bench and tests that resolve
the tables' records against ``ground_truth``.
"""

from __future__ import annotations

from crmfs.definitions import IdentifierKind as K

IDENTITY_SOURCES: dict[str, tuple[str, str, dict[str, K]]] = {
    "crm_a_contacts": (
        "contact_id",
        "updated_at",
        {"contact_id": K.CRM_CONTACT_ID, "first_name": K.FIRST_NAME, "last_name": K.LAST_NAME,
         "email": K.EMAIL, "phone": K.PHONE, "city": K.CITY},
    ),
    "crm_b_leads": (
        "lead_id",
        "created_at",
        {"lead_id": K.EXTERNAL_ID, "first_name": K.FIRST_NAME, "last_name": K.LAST_NAME,
         "email": K.EMAIL, "phone": K.PHONE, "company": K.COMPANY},
    ),
    "marketing_contacts": (
        "subscriber_id",
        "subscribed_at",
        {"subscriber_id": K.MARKETING_LEAD_ID, "email": K.EMAIL, "first_name": K.FIRST_NAME},
    ),
}  # fmt: skip
