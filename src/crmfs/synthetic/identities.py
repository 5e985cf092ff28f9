"""Which columns of the synthetic CRM's tables identify people, and how.

Each identity table's record id column, its time column (when a record changed), and its
identifier columns with their kinds, for the demo, the identity bench and tests that resolve
the tables' records against ``ground_truth`` (``identity_records``).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from crmfs.definitions import IdentifierKind as K
from crmfs.identity.deterministic import IdentityRecord
from crmfs.identity.normalize import normalize_values

IDENTITY_SOURCES: dict[str, tuple[str, str, dict[str, K]]] = {
    "crm_a_contacts": (
        "contact_id",
        "updated_at",
        {"contact_id": K.CRM_CONTACT_ID, "account_id": K.ACCOUNT_ID, "first_name": K.FIRST_NAME,
         "last_name": K.LAST_NAME, "email": K.EMAIL, "phone": K.PHONE, "city": K.CITY},
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


def identity_records(folder: Path) -> tuple[list[IdentityRecord], dict[str, str]]:
    """The identity records of a generated CRM's three identity tables, in time order (named
    ``table:id``, keys normalized as ingestion does), and each record's real person."""
    truth = pq.read_table(folder / "ground_truth.parquet").to_pylist()
    person = {f"{t['table']}:{t['record_id']}": t["person_id"] for t in truth}
    records = []
    for table, (id_column, time_column, kinds) in IDENTITY_SOURCES.items():
        data = pq.read_table(folder / f"{table}.parquet")
        columns = [
            (kind, normalize_values(kind, data.column(column).to_pylist()))
            for column, kind in kinds.items()
        ]
        for row, (record_id, seen) in enumerate(
            zip(
                data.column(id_column).to_pylist(),
                data.column(time_column).to_pylist(),
                strict=True,
            )
        ):
            keys = frozenset(
                (kind, value) for kind, values in columns if (value := values[row]) is not None
            )
            seen_us = int(seen.timestamp() * 1_000_000)
            records.append(IdentityRecord(f"{table}:{record_id}", seen_us, keys))
    records.sort(key=lambda r: (r.seen_us, r.record_id))
    return records, person
