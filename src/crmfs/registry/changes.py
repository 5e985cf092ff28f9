"""``plan``: what applying the definitions would change, and whether values change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from crmfs.definitions import Catalog, fingerprint
from crmfs.definitions.catalog import Definition


class ChangeKind(StrEnum):
    ADD = "add"
    VALUES = "values"  # a new version: values change, online state is rebuilt
    METADATA = "metadata"  # same version: only owner/description/tags/SLA changed
    REMOVE = "remove"


@dataclass(frozen=True)
class Applied:
    """A definition as the registry holds it."""

    kind: str
    name: str
    version: int
    value_fp: str
    meta_fp: str


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    change: ChangeKind
    version: int  # the version after apply
    detail: str

    @property
    def alters_values(self) -> bool:
        return self.change in (ChangeKind.ADD, ChangeKind.VALUES, ChangeKind.REMOVE)


def specs(definition: Definition) -> tuple[dict[str, Any], dict[str, Any]]:
    """(value spec, metadata spec) of any definition."""
    value = definition.value_spec()
    if hasattr(definition, "metadata_spec"):
        meta = definition.metadata_spec()
    else:
        meta = definition.metadata.to_spec()
    return value, meta


def kind_of(definition: Definition) -> str:
    return type(definition).__name__


def all_definitions(catalog: Catalog) -> list[Definition]:
    return [
        *catalog.entities.values(),
        *catalog.sources.values(),
        *catalog.views.values(),
        *catalog.services.values(),
    ]


def plan_changes(
    catalog: Catalog,
    applied: dict[tuple[str, str], Applied],
    last_versions: Mapping[tuple[str, str], int] | None = None,
) -> list[Change]:
    """Compare definitions with what the registry holds.

    ``last_versions`` are the highest versions ever recorded: a definition removed and
    added again continues after its last version, so versions are never reused.
    """
    changes: list[Change] = []
    seen: set[tuple[str, str]] = set()
    for definition in all_definitions(catalog):
        key = (kind_of(definition), definition.name)
        seen.add(key)
        value, meta = specs(definition)
        value_fp, meta_fp = fingerprint(value), fingerprint(meta)
        current = applied.get(key)
        if current is None:
            last = (last_versions or {}).get(key, 0)
            detail = "new" if last == 0 else f"added again after v{last}"
            changes.append(Change(*key, ChangeKind.ADD, last + 1, detail))
        elif current.value_fp != value_fp:
            changes.append(
                Change(
                    *key,
                    ChangeKind.VALUES,
                    current.version + 1,
                    f"v{current.version} → v{current.version + 1}",
                )
            )
        elif current.meta_fp != meta_fp:
            changes.append(
                Change(*key, ChangeKind.METADATA, current.version, f"v{current.version} kept")
            )
    for key, current in applied.items():
        if key not in seen:
            changes.append(Change(*key, ChangeKind.REMOVE, current.version, "removed"))
    return changes
