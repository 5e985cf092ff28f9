"""Event sources: where events come from and what they look like."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crmfs.definitions.identifiers import IdentifierKind, coerce_identifiers
from crmfs.definitions.metadata import (
    Metadata,
    Sensitivity,
    check_name,
    check_tags,
    coerce_sensitivity,
)
from crmfs.definitions.types import FieldType, coerce_field_type
from crmfs.errors import DefinitionError
from crmfs.timestamps import zone


@dataclass(frozen=True)
class EventSource:
    """A stream of events with a schema, an event id and an event time.

    >>> clicks = EventSource(
    ...     "clicks",
    ...     schema={"event_id": "string", "ts": "timestamp", "customer_id": "string"},
    ...     event_id="event_id",
    ...     event_time="ts",
    ... )

    ``timezone`` names the zone of naive timestamps in this source; without it a naive
    timestamp is rejected to the quarantine. ``required`` lists fields that must be
    present and non-null (the event id and event time always are). ``identifiers`` maps the
    fields that say who an event is about to their kind (``IdentifierKind``: ``"email"``,
    ``"phone"``, ``"crm_contact_id"``, ``"first_name"`` ...), for identity resolution.
    """

    name: str
    schema: Mapping[str, FieldType | str]
    event_id: str
    event_time: str
    timezone: str | None = None
    required: tuple[str, ...] = ()
    identifiers: Mapping[str, IdentifierKind | str] = field(default_factory=dict)
    owner: str = field(default="", kw_only=True)
    description: str = field(default="", kw_only=True)
    tags: Mapping[str, str] = field(default_factory=dict, kw_only=True)
    sensitivity: Sensitivity = field(default=Sensitivity.INTERNAL, kw_only=True)

    def __post_init__(self) -> None:
        check_name("source", self.name)
        label = f"source {self.name!r}"
        if not isinstance(self.schema, Mapping) or not self.schema:
            raise DefinitionError(label, "schema", "must map field names to types")
        schema: dict[str, FieldType] = {}
        for name, dtype in self.schema.items():
            if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
                raise DefinitionError(label, "schema", f"{name!r} is not a valid field name")
            schema[name] = coerce_field_type(label, f"schema.{name}", dtype)
        object.__setattr__(self, "schema", schema)
        if self.event_id not in schema:
            raise DefinitionError(label, "event_id", f"{self.event_id!r} is not in the schema")
        if schema[self.event_id] not in (FieldType.STRING, FieldType.INT):
            raise DefinitionError(label, "event_id", "must be a string or int field")
        if self.event_time not in schema:
            raise DefinitionError(label, "event_time", f"{self.event_time!r} is not in the schema")
        if schema[self.event_time] is not FieldType.TIMESTAMP:
            raise DefinitionError(
                label, "event_time", f"{self.event_time!r} must be a timestamp field"
            )
        if self.timezone is not None:
            try:
                zone(self.timezone)
            except Exception as exc:
                raise DefinitionError(label, "timezone", str(exc)) from None
        required = tuple(self.required)
        for name in required:
            if name not in schema:
                raise DefinitionError(label, "required", f"{name!r} is not in the schema")
        object.__setattr__(self, "required", required)
        object.__setattr__(self, "identifiers", coerce_identifiers(label, self.identifiers, schema))
        object.__setattr__(self, "tags", check_tags(label, self.tags))
        object.__setattr__(self, "sensitivity", coerce_sensitivity(label, self.sensitivity))

    @property
    def fields(self) -> dict[str, FieldType]:
        return dict(self.schema)  # type: ignore[arg-type]  # normalized in __post_init__

    @property
    def identifier_kinds(self) -> dict[str, IdentifierKind]:
        """The identifier fields and their kinds (``identifiers``, normalized)."""
        return dict(self.identifiers)  # type: ignore[arg-type]  # normalized in __post_init__

    def field_type(self, name: str) -> FieldType:
        return self.fields[name]

    @property
    def metadata(self) -> Metadata:
        return Metadata(
            owner=self.owner,
            description=self.description,
            tags=self.tags,
            sensitivity=self.sensitivity,
        )

    def value_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "schema": {k: v.value for k, v in sorted(self.fields.items())},
            "event_id": self.event_id,
            "event_time": self.event_time,
            "timezone": self.timezone,
            "required": sorted(self.required),
        } | self._identifiers_spec()

    def _identifiers_spec(self) -> dict[str, Any]:
        # Left out when there are none, so that sources defined before identifiers existed
        # keep their fingerprints (and versions).
        if not self.identifiers:
            return {}
        return {"identifiers": {k: str(v) for k, v in sorted(self.identifiers.items())}}
