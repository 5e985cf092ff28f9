"""Entities: what features describe (a customer, an account)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crmfs.definitions.metadata import (
    Metadata,
    Sensitivity,
    check_name,
    check_tags,
    coerce_sensitivity,
)
from crmfs.definitions.types import FieldType, coerce_field_type
from crmfs.errors import DefinitionError


@dataclass(frozen=True)
class Entity:
    """A thing features are keyed by.

    >>> customer = Entity("customer", join_key="customer_id")
    >>> person = Entity("person", join_key="golden_id", identity=True)

    An entity with ``identity=True`` is keyed by **golden ids**: its views take the key of
    each event from the identity service (which resolves the identifiers the source
    declares), not from a source field, and its entity rows give ``join_key`` as a golden id
    (or any declared identifier instead, such as ``email``).
    """

    name: str
    join_key: str
    dtype: FieldType = FieldType.STRING
    owner: str = field(default="", kw_only=True)
    description: str = field(default="", kw_only=True)
    tags: Mapping[str, str] = field(default_factory=dict, kw_only=True)
    sensitivity: Sensitivity = field(default=Sensitivity.INTERNAL, kw_only=True)
    identity: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        check_name("entity", self.name)
        label = f"entity {self.name!r}"
        if not isinstance(self.join_key, str) or not self.join_key.isidentifier():
            raise DefinitionError(label, "join_key", "must be a column name (an identifier)")
        dtype = coerce_field_type(label, "dtype", self.dtype)
        if dtype not in (FieldType.STRING, FieldType.INT):
            raise DefinitionError(label, "dtype", "join keys are string or int")
        object.__setattr__(self, "dtype", dtype)
        if self.identity and dtype is not FieldType.STRING:
            raise DefinitionError(label, "dtype", "golden ids are strings: identity entities are")
        object.__setattr__(self, "tags", check_tags(label, self.tags))
        object.__setattr__(self, "sensitivity", coerce_sensitivity(label, self.sensitivity))

    @property
    def metadata(self) -> Metadata:
        return Metadata(
            owner=self.owner,
            description=self.description,
            tags=self.tags,
            sensitivity=self.sensitivity,
        )

    def value_spec(self) -> dict[str, Any]:
        spec = {"name": self.name, "join_key": self.join_key, "dtype": self.dtype.value}
        # Only when set: entities defined before identity existed keep their fingerprints.
        return spec | ({"identity": True} if self.identity else {})
