"""Relations: the entity a golden id belongs to (a contact's account), over time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crmfs.definitions.entity import Entity
from crmfs.definitions.metadata import check_name
from crmfs.definitions.source import EventSource
from crmfs.errors import DefinitionError


@dataclass(frozen=True)
class Relation:
    """Each ``child`` (an identity entity: a person) belongs to one ``parent`` at a time, as
    the latest event of ``source`` about them says in ``parent_field``.

    >>> works_at = Relation("works_at", child=person, parent=account,
    ...                     source=crm_contacts, parent_field="account_id")

    The relation is versioned like identities: the parent of a person at time ``t`` is the
    ``parent_field`` of the latest ``source`` event (by event time, then ingestion) of the
    records that were that person at ``t``; a null value means no parent then. A feature
    view with ``via=works_at`` rolls the child's events up to the parent: a row ``(account,
    t)`` counts the events of every person who belongs to the account at ``t``.
    """

    name: str
    child: Entity
    parent: Entity
    source: EventSource
    parent_field: str
    description: str = field(default="", kw_only=True)

    def __post_init__(self) -> None:
        check_name("relation", self.name)
        label = f"relation {self.name!r}"
        if not isinstance(self.child, Entity) or not self.child.identity:
            raise DefinitionError(label, "child", "must be an Entity keyed by golden ids")
        if not isinstance(self.parent, Entity) or self.parent.identity:
            raise DefinitionError(label, "parent", "must be an Entity with its own keys")
        if not isinstance(self.source, EventSource):
            raise DefinitionError(label, "source", "must be an EventSource")
        if not any(kind.is_strong for kind in self.source.identifier_kinds.values()):
            raise DefinitionError(
                label, "source", f"source {self.source.name!r} declares no strong identifier"
            )
        schema = self.source.fields
        if self.parent_field not in schema:
            raise DefinitionError(
                label,
                "parent_field",
                f"{self.parent_field!r} is not in source {self.source.name!r}",
            )
        if schema[self.parent_field] is not self.parent.dtype:
            raise DefinitionError(
                label,
                "parent_field",
                f"{self.parent_field!r} is {schema[self.parent_field]}, the key of entity"
                f" {self.parent.name!r} is {self.parent.dtype}",
            )

    @property
    def key_column(self) -> str:
        """The column that carries each event's parent key in views rolled up by it."""
        return f"_via_{self.name}"

    def value_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "child": self.child.value_spec(),
            "parent": self.parent.value_spec(),
            "source": self.source.value_spec(),
            "parent_field": self.parent_field,
        }
