"""How a source's events are laid out in Arrow and Parquet."""

from __future__ import annotations

import pyarrow as pa

from crmfs.definitions import GOLDEN_ID, IDENTITY_RECORD, EventSource, FieldType
from crmfs.storage.event_log import EVENT_TIME, INGESTED_AT, SEQ

ARROW_TYPES: dict[FieldType, pa.DataType] = {
    FieldType.STRING: pa.string(),
    FieldType.INT: pa.int64(),
    FieldType.FLOAT: pa.float64(),
    FieldType.BOOL: pa.bool_(),
    FieldType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
}


def source_schema(source: EventSource) -> pa.Schema:
    """The validated columns of a source, before the log adds its own."""
    fields = [pa.field(name, ARROW_TYPES[dtype]) for name, dtype in source.fields.items()]
    return pa.schema([*fields, pa.field(EVENT_TIME, pa.int64())])


def log_schema(source: EventSource) -> pa.Schema:
    """The columns of a source's log segments (with the identity step's, if it declares
    identifiers)."""
    schema = source_schema(source)
    if source.identifiers:
        schema = schema.append(pa.field(IDENTITY_RECORD, pa.string()))
        schema = schema.append(pa.field(GOLDEN_ID, pa.string()))
    return schema.append(pa.field(INGESTED_AT, pa.int64())).append(pa.field(SEQ, pa.int64()))
