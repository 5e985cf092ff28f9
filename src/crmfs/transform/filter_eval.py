"""Evaluate a view filter on one event in Python, with SQL's three-valued logic.

The batch runtime renders the same expression as SQL (``crmfs.runtimes.batch.sql``);
``tests/properties`` holds the two to the same answers, nulls included.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from crmfs.definitions.filters import And, Compare, Expr, IsIn, IsNull, Not, Or

Row = Mapping[str, Any]
Predicate = Callable[[Row], bool | None]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def compile_filter(expr: Expr | None) -> Callable[[Row], bool]:
    """A predicate that is True only where the SQL ``WHERE`` would keep the row."""
    if expr is None:
        return lambda row: True
    predicate = _compile(expr)
    return lambda row: predicate(row) is True


def _compile(expr: Expr) -> Predicate:
    if isinstance(expr, Compare):
        op, column, literal = _OPS[expr.op], expr.column, expr.value
        return lambda row: None if row.get(column) is None else op(row[column], literal)
    if isinstance(expr, IsIn):
        column, values = expr.column, set(expr.values)
        return lambda row: None if row.get(column) is None else row[column] in values
    if isinstance(expr, IsNull):
        column = expr.column
        return lambda row: row.get(column) is None
    if isinstance(expr, Not):
        inner = _compile(expr.operand)
        return lambda row: _not(inner(row))
    if isinstance(expr, And):
        left, right = _compile(expr.left), _compile(expr.right)
        return lambda row: _and(left(row), right(row))
    if isinstance(expr, Or):
        left, right = _compile(expr.left), _compile(expr.right)
        return lambda row: _or(left(row), right(row))
    raise TypeError(f"unknown filter node {expr!r}")


def _not(value: bool | None) -> bool | None:
    return None if value is None else not value


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False
