"""Metadata every definition carries. It never changes feature values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from crmfs.errors import DefinitionError


class Sensitivity(StrEnum):
    """How sensitive a value is; serving masks by it (a later issue)."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    PERSONAL = "personal"


@dataclass(frozen=True, kw_only=True)
class Metadata:
    """Owner, description, tags and sensitivity: the metadata fingerprint covers only these."""

    owner: str = ""
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    sensitivity: Sensitivity = Sensitivity.INTERNAL

    def to_spec(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "description": self.description,
            "tags": dict(sorted(self.tags.items())),
            "sensitivity": self.sensitivity.value,
        }


def check_name(kind: str, name: object) -> str:
    """Names are identifiers: they become SQL columns and feature references."""
    if not isinstance(name, str) or not name.isidentifier():
        raise DefinitionError(f"{kind} {name!r}", "name", "must be a Python identifier")
    return name


def coerce_sensitivity(definition: str, value: object) -> Sensitivity:
    try:
        return Sensitivity(str(value))
    except ValueError:
        valid = ", ".join(s.value for s in Sensitivity)
        raise DefinitionError(
            definition, "sensitivity", f"{value!r} is not one of {valid}"
        ) from None


def check_tags(definition: str, tags: object) -> dict[str, str]:
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise DefinitionError(definition, "tags", "must map strings to strings")
    return dict(tags)
