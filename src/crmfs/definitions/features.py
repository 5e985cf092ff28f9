"""Feature definitions: window aggregations and latest values."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from crmfs.definitions.metadata import Sensitivity, check_name, coerce_sensitivity
from crmfs.definitions.types import FieldType
from crmfs.errors import DefinitionError
from crmfs.timestamps import Duration, format_duration, parse_duration

HOUR = 3600
DAY = 86400


class Function(StrEnum):
    """Aggregation functions. Their meaning lives in ``crmfs.transform.aggregators``."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    COUNT_DISTINCT = "count_distinct"
    LAST = "last"
    LAST_N = "last_n"


_NUMERIC_ONLY = {Function.SUM, Function.MEAN}
_ORDERABLE_ONLY = {Function.MIN, Function.MAX}


def default_hop(window_seconds: int) -> int:
    """The hop (tile size) used when a window names none.

    Windows shorter than 12 hours hop by a minute, shorter than 12 days by an hour, longer
    ones by a day: a window of length ``w`` then holds at most ``w + hop`` of events.
    """
    if window_seconds < 12 * HOUR:
        return min(60, window_seconds)
    if window_seconds < 12 * DAY:
        return HOUR
    return DAY


@dataclass(frozen=True)
class WindowFeature:
    """One output feature: a function over one window (what ``Aggregation`` expands to)."""

    name: str
    function: Function
    field: str | None
    window: int
    hop: int
    n: int | None
    output_type: FieldType
    sensitivity: Sensitivity
    description: str

    def value_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "function": self.function.value,
            "field": self.field,
            "window": self.window,
            "hop": self.hop,
            "n": self.n,
        }


@dataclass(frozen=True)
class Aggregation:
    """A window aggregation over one or more windows; one feature per window.

    >>> Aggregation("spend", "sum", field="amount", windows=["7d", "30d"])  # spend_7d, spend_30d

    ``hop`` is the resolution of the window's lower bound (see docs/semantics.md); the
    default depends on the window length (``default_hop``). ``n`` is required for
    ``last_n``. ``count`` without a field counts events; with a field, non-null values.
    """

    name: str
    function: Function | str
    windows: Sequence[Duration]
    field: str | None = None
    hop: Duration | None = None
    n: int | None = None
    description: str = dataclasses.field(default="", kw_only=True)
    sensitivity: Sensitivity = dataclasses.field(default=Sensitivity.INTERNAL, kw_only=True)

    def expand(self, view: str, schema: dict[str, FieldType]) -> list[WindowFeature]:
        label = f"feature view {view!r}, aggregation {self.name!r}"
        check_name(f"aggregation in view {view!r}", self.name)
        try:
            function = Function(self.function)
        except ValueError:
            valid = ", ".join(f.value for f in Function)
            raise DefinitionError(
                label, "function", f"{self.function!r} is not one of {valid}"
            ) from None
        field_type = self._check_field(label, function, schema)
        if function is Function.LAST_N:
            if not isinstance(self.n, int) or isinstance(self.n, bool) or not 1 <= self.n <= 1000:
                raise DefinitionError(label, "n", "last_n needs n, an int from 1 to 1000")
        elif self.n is not None:
            raise DefinitionError(label, "n", f"only last_n takes n, not {function.value}")
        if isinstance(self.windows, str) or not self.windows:
            raise DefinitionError(label, "windows", "give a list of durations, e.g. ['1h', '7d']")
        features = []
        for raw in self.windows:
            try:
                window = parse_duration(raw)
                hop = parse_duration(self.hop) if self.hop is not None else default_hop(window)
            except ValueError as exc:
                raise DefinitionError(
                    label, "windows" if self.hop is None else "hop", str(exc)
                ) from None
            if hop > window:
                raise DefinitionError(
                    label, "hop", f"hop {format_duration(hop)} exceeds window {raw}"
                )
            features.append(
                WindowFeature(
                    name=f"{self.name}_{format_duration(window)}",
                    function=function,
                    field=self.field,
                    window=window,
                    hop=hop,
                    n=self.n,
                    output_type=_output_type(function, field_type),
                    sensitivity=coerce_sensitivity(label, self.sensitivity),
                    description=self.description,
                )
            )
        return features

    def _check_field(
        self, label: str, function: Function, schema: dict[str, FieldType]
    ) -> FieldType | None:
        if self.field is None:
            if function is not Function.COUNT:
                raise DefinitionError(label, "field", f"{function.value} needs a field")
            return None
        if self.field not in schema:
            raise DefinitionError(label, "field", f"{self.field!r} is not in the source schema")
        field_type = schema[self.field]
        if function in _NUMERIC_ONLY and not field_type.is_numeric:
            raise DefinitionError(label, "field", f"{function.value} needs a numeric field")
        if function in _ORDERABLE_ONLY and not field_type.is_orderable:
            raise DefinitionError(label, "field", f"{function.value} needs an orderable field")
        return field_type


def _output_type(function: Function, field_type: FieldType | None) -> FieldType:
    if function in (Function.COUNT, Function.COUNT_DISTINCT):
        return FieldType.INT
    if function is Function.MEAN:
        return FieldType.FLOAT
    assert field_type is not None  # checked by _check_field
    return field_type


@dataclass(frozen=True)
class Latest:
    """The latest value of a field (the view's TTL bounds its age).

    >>> Latest("plan", field="plan_name")
    """

    name: str
    field: str
    description: str = dataclasses.field(default="", kw_only=True)
    sensitivity: Sensitivity = dataclasses.field(default=Sensitivity.INTERNAL, kw_only=True)

    def check(self, view: str, schema: dict[str, FieldType]) -> FieldType:
        label = f"feature view {view!r}, latest {self.name!r}"
        check_name(f"latest in view {view!r}", self.name)
        if self.field not in schema:
            raise DefinitionError(label, "field", f"{self.field!r} is not in the source schema")
        coerce_sensitivity(label, self.sensitivity)
        return schema[self.field]

    def value_spec(self) -> dict[str, Any]:
        return {"name": self.name, "field": self.field}
