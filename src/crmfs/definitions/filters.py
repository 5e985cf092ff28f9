"""Row filters for feature views: a tiny expression tree both runtimes evaluate.

Semantics are SQL's three-valued logic: a comparison with a null is unknown, and a
row passes the filter only when the whole expression is true.

>>> purchases = (col("event_type") == "purchase") & (col("amount") > 0)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]
Scalar = str | int | float | bool


class Expr:
    """Base of filter expressions; combine with ``&``, ``|`` and ``~``."""

    def __and__(self, other: Expr) -> Expr:
        return And(self, _expr(other))

    def __or__(self, other: Expr) -> Expr:
        return Or(self, _expr(other))

    def __invert__(self) -> Expr:
        return Not(self)

    def columns(self) -> set[str]:
        raise NotImplementedError  # every concrete node overrides it

    def to_spec(self) -> list[Any]:
        raise NotImplementedError  # every concrete node overrides it


def _expr(value: object) -> Expr:
    if not isinstance(value, Expr):
        raise TypeError(f"expected a filter expression, got {value!r}")
    return value


class Column:
    """A reference to a source field, the start of every filter."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _cmp(self, op: CompareOp, value: object) -> Compare:
        if isinstance(value, Column):
            raise TypeError("filters compare a column with a literal value")
        if not isinstance(value, str | int | float | bool):
            raise TypeError(f"filter literal must be str, int, float or bool, got {value!r}")
        return Compare(op, self.name, value)

    def __eq__(self, value: object) -> Compare:  # type: ignore[override]
        return self._cmp("==", value)

    def __ne__(self, value: object) -> Compare:  # type: ignore[override]
        return self._cmp("!=", value)

    def __lt__(self, value: object) -> Compare:
        return self._cmp("<", value)

    def __le__(self, value: object) -> Compare:
        return self._cmp("<=", value)

    def __gt__(self, value: object) -> Compare:
        return self._cmp(">", value)

    def __ge__(self, value: object) -> Compare:
        return self._cmp(">=", value)

    __hash__ = None  # type: ignore[assignment]  # == builds an expression

    def isin(self, values: Iterable[Scalar]) -> IsIn:
        return IsIn(self.name, tuple(values))

    def is_null(self) -> IsNull:
        return IsNull(self.name)

    def not_null(self) -> Not:
        return Not(IsNull(self.name))


def col(name: str) -> Column:
    """Refer to a source field in a filter: ``col("event_type") == "click"``."""
    return Column(name)


@dataclass(frozen=True, eq=False)
class Compare(Expr):
    op: CompareOp
    column: str
    value: Scalar

    def columns(self) -> set[str]:
        return {self.column}

    def to_spec(self) -> list[Any]:
        return ["cmp", self.op, self.column, self.value]


@dataclass(frozen=True, eq=False)
class IsIn(Expr):
    column: str
    values: tuple[Scalar, ...]

    def columns(self) -> set[str]:
        return {self.column}

    def to_spec(self) -> list[Any]:
        return ["in", self.column, list(self.values)]


@dataclass(frozen=True, eq=False)
class IsNull(Expr):
    column: str

    def columns(self) -> set[str]:
        return {self.column}

    def to_spec(self) -> list[Any]:
        return ["is_null", self.column]


@dataclass(frozen=True, eq=False)
class And(Expr):
    left: Expr
    right: Expr

    def columns(self) -> set[str]:
        return self.left.columns() | self.right.columns()

    def to_spec(self) -> list[Any]:
        return ["and", self.left.to_spec(), self.right.to_spec()]


@dataclass(frozen=True, eq=False)
class Or(Expr):
    left: Expr
    right: Expr

    def columns(self) -> set[str]:
        return self.left.columns() | self.right.columns()

    def to_spec(self) -> list[Any]:
        return ["or", self.left.to_spec(), self.right.to_spec()]


@dataclass(frozen=True, eq=False)
class Not(Expr):
    operand: Expr

    def columns(self) -> set[str]:
        return self.operand.columns()

    def to_spec(self) -> list[Any]:
        return ["not", self.operand.to_spec()]
