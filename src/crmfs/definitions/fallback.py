"""Fallback chains: what serves a feature whose online value is stale or missing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from crmfs.definitions.types import FieldType
from crmfs.errors import DefinitionError

ALL_FEATURES = "*"


class FallbackKind(StrEnum):
    FEATURE = "feature"
    DEFAULT = "default"
    OFFLINE = "offline"


@dataclass(frozen=True)
class Fallback:
    """One step of a fallback chain; build it with the class methods.

    >>> FeatureView(..., fallback={
    ...     "visits_1h": [Fallback.feature("visits_7d"), Fallback.default(0)],
    ...     "*": [Fallback.offline()],
    ... })

    Steps are tried in order, and the first that gives a fresh value serves it.
    """

    kind: FallbackKind
    feature_name: str | None = None
    value: Any = None

    @classmethod
    def feature(cls, name: str) -> Fallback:
        """Another feature of the same view (a coarser window, say)."""
        return cls(FallbackKind.FEATURE, feature_name=name)

    @classmethod
    def default(cls, value: Any) -> Fallback:
        """A constant value."""
        return cls(FallbackKind.DEFAULT, value=value)

    @classmethod
    def offline(cls) -> Fallback:
        """The value the batch runtime computes from the event log now (slower)."""
        return cls(FallbackKind.OFFLINE)

    def label(self, view: str) -> str:
        """How a response names the step that served a value."""
        if self.kind is FallbackKind.FEATURE:
            return f"{view}:{self.feature_name}"
        return self.kind.value

    def to_spec(self) -> dict[str, Any]:
        if self.kind is FallbackKind.FEATURE:
            return {"feature": self.feature_name}
        if self.kind is FallbackKind.DEFAULT:
            return {"default": self.value}
        return {"offline": True}


FallbackChains = dict[str, tuple[Fallback, ...]]

_DEFAULT_TYPES: dict[FieldType, tuple[type, ...]] = {
    FieldType.STRING: (str,),
    FieldType.INT: (int,),
    FieldType.FLOAT: (int, float),
    FieldType.BOOL: (bool,),
}


def check_fallbacks(
    label: str, raw: object, output_types: Mapping[str, FieldType]
) -> FallbackChains:
    """Each feature's chain, from a list (every feature) or a mapping by feature name, where
    ``"*"`` gives the chain of features not named."""
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        given = dict(raw)
    elif isinstance(raw, Sequence) and not isinstance(raw, str):
        given = {ALL_FEATURES: raw}
    else:
        raise DefinitionError(label, "fallback", "give a list of Fallback or a mapping of them")
    chains: FallbackChains = {}
    for name, steps in given.items():
        if name != ALL_FEATURES and name not in output_types:
            raise DefinitionError(label, "fallback", f"{name!r} is not a feature of this view")
        if isinstance(steps, Fallback):
            steps = [steps]
        if not isinstance(steps, Sequence) or isinstance(steps, str) or not steps:
            raise DefinitionError(label, "fallback", f"{name!r}: give a non-empty list of Fallback")
        for step in steps:
            if not isinstance(step, Fallback):
                raise DefinitionError(
                    label,
                    "fallback",
                    f"{name!r}: {step!r} is not a Fallback (Fallback.feature, .default, .offline)",
                )
        chains[name] = tuple(steps)
    resolved: FallbackChains = {}
    everyone = chains.get(ALL_FEATURES, ())
    for name, output_type in output_types.items():
        chain = chains.get(name, everyone)
        for step in chain:
            _check_step(label, name, step, output_type, output_types)
        if chain:
            resolved[name] = chain
    return resolved


def _check_step(
    label: str,
    name: str,
    step: Fallback,
    output_type: FieldType,
    output_types: Mapping[str, FieldType],
) -> None:
    if step.kind is FallbackKind.FEATURE:
        other = step.feature_name or ""
        if other == name:
            raise DefinitionError(label, "fallback", f"{name!r} cannot fall back to itself")
        if other not in output_types:
            raise DefinitionError(
                label, "fallback", f"{name!r} falls back to {other!r}, not a feature of this view"
            )
        if output_types[other] is not output_type:
            raise DefinitionError(
                label,
                "fallback",
                f"{name!r} ({output_type}) falls back to {other!r} ({output_types[other]})",
            )
    elif step.kind is FallbackKind.DEFAULT and step.value is not None:
        allowed = _DEFAULT_TYPES.get(output_type)
        bad_bool = isinstance(step.value, bool) and output_type is not FieldType.BOOL
        if allowed is None or bad_bool or not isinstance(step.value, allowed):
            raise DefinitionError(
                label,
                "fallback",
                f"{name!r} ({output_type}) cannot default to {step.value!r}",
            )
