"""The batch plan's SQL in Spark's dialect: the DuckDB query of ``sql.py``, translated.

The plan's SQL is written once (``crmfs.runtimes.batch.sql``); Spark runs the same query,
parsed by sqlglot and written out in Spark SQL. sqlglot translates most of it as is, but a few
constructs mean something else, or nothing, in Spark, and sqlglot would pass them through
silently. Each is rewritten here on purpose, and the parity suite runs the result on a real
Spark against DuckDB:

===========================  ============================================================
DuckDB                       Spark
===========================  ============================================================
``arg_max(x, o)``,           ``max_by(x, IF(x IS NULL, NULL, o) [, n])``: DuckDB skips rows
``max_by(x, o, n)``          whose ``x`` is NULL, Spark's ``max_by`` keeps them (a struct
                             built in the query is never NULL and needs no guard)
``arg_max_null(x, o)``       ``max_by(x, o)`` (both keep a NULL ``x``)
``HUGEINT``                  ``DECIMAL(38, 0)`` (a 128-bit integer; Spark has none)
``epoch_us(ts)``             ``unix_micros(ts)``
``len(list)``                ``size(list)`` (sqlglot writes ``length``, which is for strings)
``list(x)``                  ``collect_list(x)``, which skips NULLs where DuckDB keeps them:
                             accepted only under a ``FILTER`` that excludes NULL ``x``
``e.* REPLACE (x AS c)``     ``e.* EXCEPT (c), x AS c``
===========================  ============================================================

The rest has the same meaning in both, checked against an explicit list (``_SAME_MEANING``):
a function outside it is refused with :class:`UntranslatedSQL` rather than guessed at, so a
new construct in the plan's SQL fails the golden snapshots instead of computing other values.
Both dialects agree on what the plan relies on: ``%`` keeps the dividend's sign, integer
division (DuckDB's ``//``, Spark's ``DIV``) truncates, aggregates ``FILTER (WHERE ...)``,
``count(DISTINCT ...)`` treats ``-0.0`` as ``0.0``, strings compare by bytes.
"""

from __future__ import annotations

from crmfs.errors import CrmfsError, MissingExtra

try:
    from sqlglot import ErrorLevel, exp, parse_one
except ImportError as exc:  # the spark extra brings it
    raise MissingExtra("sqlglot", "spark") from exc


class UntranslatedSQL(CrmfsError):
    """The plan's SQL holds a construct without a known Spark equivalent."""

    def __init__(self, construct: str) -> None:
        self.construct = construct
        super().__init__(
            f"no Spark translation for {construct!r} in the batch plan's SQL; add one to"
            " crmfs.runtimes.batch.spark_sql (and a golden snapshot)"
        )


# Functions of the plan's SQL that mean the same in DuckDB and Spark, as sqlglot writes them.
_SAME_MEANING: tuple[type[exp.Expr], ...] = (
    exp.Count,
    exp.Sum,
    exp.Min,
    exp.Max,
    exp.Coalesce,
    exp.Nullif,
    exp.Least,
    exp.Greatest,
    exp.Cast,
    exp.Filter,
    exp.Case,
    exp.If,
    exp.ArrayAgg,  # list(x): Spark's collect_list; both skip NULLs
    exp.ArrayDistinct,
    exp.ArraySize,
    exp.Array,
    exp.Struct,
    exp.Distinct,
)
_TRANSLATED_FUNCTIONS = frozenset({"arg_max_null", "epoch_us"})
_TYPES = {
    exp.DataType.Type.BIGINT,
    exp.DataType.Type.DOUBLE,
    exp.DataType.Type.VARCHAR,
    exp.DataType.Type.TEXT,
    exp.DataType.Type.BOOLEAN,
    exp.DataType.Type.INT128,
    exp.DataType.Type.DECIMAL,
}


def spark_sql(duckdb_sql: str) -> str:
    """``duckdb_sql`` (a query of the batch plan, DuckDB dialect) in Spark SQL."""
    tree = parse_one(duckdb_sql, read="duckdb")
    _check_known(tree)
    tree = tree.transform(_translate)
    return tree.sql(dialect="spark", pretty=True, unsupported_level=ErrorLevel.RAISE)


def _check_known(tree: exp.Expr) -> None:
    for node in tree.find_all(exp.Func):
        if isinstance(node, exp.Connector):  # AND, OR
            continue
        if isinstance(node, exp.Anonymous):
            if node.name.lower() not in _TRANSLATED_FUNCTIONS:
                raise UntranslatedSQL(f"{node.name}()")
        elif isinstance(node, exp.Length) and not _is_list(node.this):
            raise UntranslatedSQL(node.sql("duckdb"))  # len() of a string: not in the plan
        elif isinstance(node, exp.ArgMax | exp.Length):
            continue  # rewritten by _translate
        elif isinstance(node, exp.ArrayAgg) and not _nulls_filtered(node):
            raise UntranslatedSQL(node.sql("duckdb"))
        elif isinstance(node, exp.ArrayDistinct) and not _is_aggregated_list(node.this):
            # DuckDB's list_distinct drops NULLs, Spark's array_distinct keeps one: the same
            # only over list(x), whose NULLs are already filtered out (above).
            raise UntranslatedSQL(node.sql("duckdb"))
        elif not isinstance(node, _SAME_MEANING):
            raise UntranslatedSQL(node.sql("duckdb"))
    for kind in tree.find_all(exp.DataType):
        if kind.this not in _TYPES:
            raise UntranslatedSQL(kind.sql("duckdb"))


def _is_list(node: exp.Expr) -> bool:
    if isinstance(node, exp.Filter):
        node = node.this
    return isinstance(node, exp.ArrayDistinct | exp.ArrayAgg | exp.Array)


def _is_aggregated_list(node: exp.Expr) -> bool:
    return isinstance(node.this if isinstance(node, exp.Filter) else node, exp.ArrayAgg)


def _nulls_filtered(aggregate: exp.ArrayAgg) -> bool:
    """Whether ``list(x)`` sits under ``FILTER (WHERE ... AND x IS NOT NULL ...)``."""
    value = aggregate.this
    if isinstance(value, exp.Distinct):
        value = value.expressions[0]
    parent = aggregate.parent
    if not isinstance(parent, exp.Filter):
        return False
    condition = parent.expression.this
    conjuncts = condition.flatten() if isinstance(condition, exp.And) else [condition]
    not_null = exp.Not(this=exp.Is(this=value.copy(), expression=exp.Null()))
    return any(c == not_null for c in conjuncts)


def _translate(node: exp.Expr) -> exp.Expr:
    """One node in Spark's terms. A node built anew gets its arguments translated here:
    sqlglot's ``transform`` does not descend into a replacement."""
    if isinstance(node, exp.ArgMax):
        return _max_by(node)
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        if name == "arg_max_null":
            return exp.Anonymous(this="max_by", expressions=_translated(node.expressions))
        if name == "epoch_us":
            return exp.Anonymous(this="unix_micros", expressions=_translated(node.expressions))
    if isinstance(node, exp.Length):
        return exp.ArraySize(this=node.this.transform(_translate))
    if isinstance(node, exp.DataType) and node.this is exp.DataType.Type.INT128:
        return exp.DataType.build("DECIMAL(38, 0)")
    if isinstance(node, exp.Select):
        return _without_star_replace(node)
    return node


def _translated(nodes: list[exp.Expr]) -> list[exp.Expr]:
    return [n.transform(_translate) for n in nodes]


def _max_by(node: exp.ArgMax) -> exp.Expr:
    """DuckDB's ``arg_max(x, o [, n])`` (rows with a NULL ``x`` skipped) as Spark's
    ``max_by``, which would keep them."""
    value, order = _translated([node.this, node.expression])
    count = node.args.get("count")
    if not isinstance(value, exp.Struct):  # a struct built in the query is never NULL
        order = exp.If(
            this=exp.Is(this=value.copy(), expression=exp.Null()), true=exp.Null(), false=order
        )
    arguments = [value, order] + ([count] if count is not None else [])
    return exp.Anonymous(this="max_by", expressions=arguments)


def _without_star_replace(select: exp.Select) -> exp.Select:
    """``t.* REPLACE (x AS c)`` as ``t.* EXCEPT (c), x AS c`` (Spark has no REPLACE)."""
    columns: list[exp.Expr] = []
    for column in select.expressions:
        star = column.this if isinstance(column, exp.Column) else column
        replaced = star.args.get("replace") if isinstance(star, exp.Star) else None
        if not replaced:
            columns.append(column)
            continue
        star.set("replace", None)
        names = [exp.column(alias.alias) for alias in replaced]
        star.set("except_", [*(star.args.get("except_") or []), *names])
        columns += [column, *replaced]
    select.set("expressions", columns)
    return select
