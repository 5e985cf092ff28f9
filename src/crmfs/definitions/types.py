"""Field types of event sources and how Python values relate to them."""

from __future__ import annotations

from enum import StrEnum

from crmfs.errors import DefinitionError


class FieldType(StrEnum):
    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    TIMESTAMP = "timestamp"

    @property
    def is_numeric(self) -> bool:
        return self in (FieldType.INT, FieldType.FLOAT)

    @property
    def is_orderable(self) -> bool:
        return self is not FieldType.BOOL


def coerce_field_type(definition: str, field_name: str, value: object) -> FieldType:
    try:
        return FieldType(str(value))
    except ValueError:
        valid = ", ".join(t.value for t in FieldType)
        raise DefinitionError(
            definition, field_name, f"type {value!r} is not one of {valid}"
        ) from None
