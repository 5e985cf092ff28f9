"""The Python filter evaluator and the SQL rendering keep exactly the same rows, nulls included."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from crmfs.definitions.filters import Column, Expr, col
from crmfs.runtimes.batch.sql import filter_sql
from crmfs.transform.filter_eval import compile_filter

COLUMNS: dict[str, st.SearchStrategy[Any]] = {
    "s": st.one_of(st.none(), st.sampled_from(["", "a", "b", "ab", "é", "Z"])),
    "i": st.one_of(st.none(), st.integers(-3, 3)),
    "f": st.one_of(st.none(), st.sampled_from([-1.5, 0.0, 0.5, 2.0, 3.0])),
    "b": st.one_of(st.none(), st.booleans()),
}
TYPES = {"s": pa.string(), "i": pa.int64(), "f": pa.float64(), "b": pa.bool_()}


def _comparison(name: str, value: Any, op: str) -> Expr:
    column: Column = col(name)
    result: Expr = {
        "==": column == value,
        "!=": column != value,
        "<": column < value,
        "<=": column <= value,
        ">": column > value,
        ">=": column >= value,
    }[op]
    return result


@st.composite
def leaves(draw: st.DrawFn) -> Expr:
    name = draw(st.sampled_from(list(COLUMNS)))
    kind = draw(st.sampled_from(["cmp", "in", "null", "notnull"]))
    if kind == "null":
        return col(name).is_null()
    if kind == "notnull":
        return col(name).not_null()
    value = draw(COLUMNS[name].filter(lambda v: v is not None))
    if kind == "in":
        others = draw(st.lists(COLUMNS[name].filter(lambda v: v is not None), max_size=3))
        return col(name).isin([value, *others])
    op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
    if name == "b" and op not in ("==", "!="):
        op = "=="
    return _comparison(name, value, op)


expressions = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: p[0] & p[1]),
        st.tuples(inner, inner).map(lambda p: p[0] | p[1]),
        inner.map(lambda e: ~e),
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(expr=expressions, rows=st.lists(st.fixed_dictionaries(COLUMNS), min_size=1, max_size=20))
def test_python_filter_equals_sql_filter(expr: Expr, rows: list[dict[str, Any]]) -> None:
    keep = compile_filter(expr)
    in_python = [i for i, row in enumerate(rows) if keep(row)]
    table = pa.table(
        {"__i": pa.array(range(len(rows)), pa.int64())}
        | {name: pa.array([r[name] for r in rows], TYPES[name]) for name in COLUMNS}
    )
    db = duckdb.connect()
    db.register("events", table)
    in_sql = [
        r[0]
        for r in db.sql(f"SELECT __i FROM events WHERE {filter_sql(expr)} ORDER BY __i").fetchall()
    ]
    db.close()
    assert in_python == in_sql
