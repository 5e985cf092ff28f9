"""Compile view plans to SQL (DuckDB dialect): point-in-time features and tiles.

Every query reads a relation ``events`` (the source's log: source fields plus
``_event_time_us``, ``_ingested_at_us``, ``_seq``). Point-in-time queries also read
``entity_rows(__row, __key, __t)``. Times are integer microseconds, so window bounds
are exact integer arithmetic, the same as in ``crmfs.transform.plan``.
"""

from __future__ import annotations

from crmfs.definitions import FieldType, Function
from crmfs.definitions.filters import And, Compare, Expr, IsIn, IsNull, Not, Or
from crmfs.transform.plan import PlannedWindow, ViewPlan


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"CAST({value!r} AS DOUBLE)"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"cannot render {value!r} as SQL")


def filter_sql(expr: Expr) -> str:
    """The filter as a SQL boolean expression (three-valued logic comes with SQL)."""
    if isinstance(expr, Compare):
        op = "=" if expr.op == "==" else "<>" if expr.op == "!=" else expr.op
        return f"({quote(expr.column)} {op} {literal(expr.value)})"
    if isinstance(expr, IsIn):
        if not expr.values:
            return f"(CASE WHEN {quote(expr.column)} IS NULL THEN NULL ELSE FALSE END)"
        return f"({quote(expr.column)} IN ({', '.join(literal(v) for v in expr.values)}))"
    if isinstance(expr, IsNull):
        return f"({quote(expr.column)} IS NULL)"
    if isinstance(expr, Not):
        return f"(NOT {filter_sql(expr.operand)})"
    if isinstance(expr, And):
        return f"({filter_sql(expr.left)} AND {filter_sql(expr.right)})"
    if isinstance(expr, Or):
        return f"({filter_sql(expr.left)} OR {filter_sql(expr.right)})"
    raise TypeError(f"unknown filter node {expr!r}")


def floor_to(expr: str, step: int) -> str:
    """``expr`` rounded down to a multiple of ``step`` (SQL's % keeps the dividend's sign)."""
    return f"(({expr}) - ((({expr}) % {step}) + {step}) % {step})"


def _value(plan: ViewPlan, field: str) -> str:
    """A source field as the runtimes see it: timestamps as integer microseconds."""
    if plan.view.source.field_type(field) is FieldType.TIMESTAMP:
        return f"epoch_us({quote(field)})"
    return quote(field)


def source_events_sql(plan: ViewPlan) -> str:
    """The view's events: key, times, the fields it reads, its filter applied."""
    columns = [
        f"{quote(plan.view.key)} AS __key",
        "_event_time_us AS __et",
        "_seq AS __seq",
        "_ingested_at_us AS __ing",
    ]
    columns += [f"{_value(plan, f)} AS {quote('v_' + f)}" for f in plan.value_fields()]
    where = [f"{quote(plan.view.key)} IS NOT NULL"]
    if plan.view.filter is not None:
        where.append(filter_sql(plan.view.filter))
    return f"SELECT {', '.join(columns)} FROM events WHERE {' AND '.join(where)}"


# One comparable key for "later event, then later ingested": seq stays below 10^12.
_ORDER = "(CAST(__et AS HUGEINT) * 1000000000000 + __seq)"


def window_aggregate_sql(plan: ViewPlan, w: PlannedWindow, in_window: str) -> str:
    """The aggregate of ``w`` over joined rows (``ev`` columns) where ``in_window`` holds."""
    f = w.feature
    v = quote("v_" + f.field) if f.field else None
    cond = in_window if v is None else f"{in_window} AND {v} IS NOT NULL"
    match f.function:
        case Function.COUNT:
            return f"count(*) FILTER (WHERE {cond})"
        case Function.SUM:
            zero = "0.0" if f.output_type is FieldType.FLOAT else "0"
            total = f"sum({v}) FILTER (WHERE {cond})"
            if f.output_type is FieldType.INT:
                total = f"CAST({total} AS BIGINT)"
            return f"coalesce({total}, {zero})"
        case Function.MEAN:
            return (
                f"CAST(sum({v}) FILTER (WHERE {cond}) AS DOUBLE)"
                f" / nullif(count({v}) FILTER (WHERE {cond}), 0)"
            )
        case Function.MIN:
            return f"min({v}) FILTER (WHERE {cond})"
        case Function.MAX:
            return f"max({v}) FILTER (WHERE {cond})"
        case Function.COUNT_DISTINCT:
            if not _is_float(plan, f.field):
                # DuckDB plans count(DISTINCT) as a separate pipeline over a materialized
                # join; the distinct list of each row's values is cheaper. Floats keep
                # count(DISTINCT) so that 0.0 and -0.0 stay one value, as in the algebra.
                return f"coalesce(len(list_distinct(list({v}) FILTER (WHERE {cond}))), 0)"
            return f"count(DISTINCT {v}) FILTER (WHERE {cond})"
        case Function.LAST:
            return f"arg_max({v}, {_ORDER}) FILTER (WHERE {cond})"
        case Function.LAST_N:
            return f"max_by({v}, {_ORDER}, {f.n}) FILTER (WHERE {cond})"
    raise AssertionError(f.function)


def empty_value_sql(w: PlannedWindow) -> str | None:
    """What an entity row with no events at all gets (None: SQL NULL)."""
    match w.feature.function:
        case Function.COUNT | Function.COUNT_DISTINCT:
            return "0"
        case Function.SUM:
            return "0.0" if w.feature.output_type is FieldType.FLOAT else "0"
        case Function.LAST_N:
            return "[]"
    return None


def point_in_time_sql(plan: ViewPlan, as_served: bool) -> str:
    """Each entity row's features at its own time ``__t``, in ``plan.output_names`` order.

    Rows come out in no particular order (``__row`` says which is which).
    """
    pairs = dict.fromkeys((w.window_us, w.hop_us) for w in plan.windows)
    bounds = {pair: f"__l{i}" for i, pair in enumerate(pairs)}
    bound_columns = [
        f"{floor_to(f'__t - {wu}', hu)} AS {name}" for (wu, hu), name in bounds.items()
    ]
    lower_bounds = [f"q.{name}" for name in bounds.values()]
    if plan.latest and plan.ttl_us is not None:
        lower_bounds.append(f"q.__t - {plan.ttl_us} - 1")
    join_on = ["ev.__key = q.__key", "ev.__et <= q.__t"]
    if lower_bounds and not (plan.latest and plan.ttl_us is None):
        join_on.append(
            f"ev.__et > least({', '.join(lower_bounds)})"
            if len(lower_bounds) > 1
            else f"ev.__et > {lower_bounds[0]}"
        )
    if as_served:
        join_on.append("ev.__ing <= q.__t")
    aggregates = []
    for w in plan.windows:
        in_window = f"__et > {bounds[(w.window_us, w.hop_us)]}"
        aggregates.append(f"{window_aggregate_sql(plan, w, in_window)} AS {quote(w.feature.name)}")
    if plan.latest:
        # One aggregate for all latest values: the newest event's values, as a struct.
        members = ", ".join(f"v{i} := {quote('v_' + f.field)}" for i, f in enumerate(plan.latest))
        cond = "TRUE" if plan.ttl_us is None else f"__et >= __t - {plan.ttl_us}"
        aggregates.append(
            f"arg_max_null(struct_pack({members}), {_ORDER}) FILTER (WHERE {cond}) AS __latest"
        )
    outputs = []
    for w in plan.windows:
        name = quote(w.feature.name)
        empty = empty_value_sql(w)
        outputs.append(f"coalesce(a.{name}, {empty}) AS {name}" if empty else f"a.{name}")
    outputs += [f"a.__latest.v{i} AS {quote(f.name)}" for i, f in enumerate(plan.latest)]
    return f"""
WITH ev AS ({source_events_sql(plan)}),
q AS (SELECT __row, __key, __t{"".join(", " + c for c in bound_columns)} FROM entity_rows),
joined AS (
    SELECT q.* EXCLUDE (__key), ev.* EXCLUDE (__key)
    FROM q JOIN ev ON {" AND ".join(join_on)}
),
a AS (SELECT __row, {", ".join(aggregates)} FROM joined GROUP BY __row)
SELECT q.__row, {", ".join(outputs)}
FROM entity_rows q LEFT JOIN a ON a.__row = q.__row
""".strip()


def _is_float(plan: ViewPlan, field: str | None) -> bool:
    return field is not None and plan.view.source.field_type(field) is FieldType.FLOAT


def tiles_sql(
    plan: ViewPlan, group_index: int, first_tile: int, start_us: int, end_us: int, upto_seq: int
) -> str:
    """Partial aggregates per (entity, tile) of one hop group, for a backfill.

    Columns: ``__key``, ``__k`` and one per feature slot holding its partial in the
    algebra's representation (see ``crmfs.transform.aggregators``).
    """
    group = plan.hop_groups[group_index]
    partials = []
    for w in group.features:
        f = w.feature
        v = quote("v_" + f.field) if f.field else None
        nn = "TRUE" if v is None else f"{v} IS NOT NULL"
        match f.function:
            case Function.COUNT:
                expr = f"count(*) FILTER (WHERE {nn})"
            case Function.SUM:
                zero = "0.0" if f.output_type is FieldType.FLOAT else "0"
                total = f"sum({v})"
                if f.output_type is FieldType.INT:
                    total = f"CAST({total} AS BIGINT)"
                expr = f"coalesce({total}, {zero})"
            case Function.MEAN:
                kind = (
                    "DOUBLE"
                    if f.output_type is FieldType.FLOAT and _is_float(plan, f.field)
                    else "BIGINT"
                )
                expr = f"struct_pack(s := CAST(coalesce(sum({v}), 0) AS {kind}), c := count({v}))"
            case Function.MIN:
                expr = f"min({v})"
            case Function.MAX:
                expr = f"max({v})"
            case Function.COUNT_DISTINCT:
                expr = f"coalesce(list(DISTINCT {v}) FILTER (WHERE {nn}), [])"
            case Function.LAST:
                expr = f"arg_max(struct_pack(t := __et, s := __seq, v := {v}), {_ORDER}) FILTER (WHERE {nn})"
            case Function.LAST_N:
                expr = f"coalesce(max_by(struct_pack(t := __et, s := __seq, v := {v}), {_ORDER}, {f.n}) FILTER (WHERE {nn}), [])"
        partials.append(f"{expr} AS p{w.slot}")
    k = f"((__et - 1) - (((__et - 1) % {group.hop_us}) + {group.hop_us}) % {group.hop_us}) // {group.hop_us}"
    return f"""
WITH ev AS ({source_events_sql(plan)}),
t AS (SELECT *, {k} AS __k FROM ev WHERE __et >= {start_us} AND __et < {end_us} AND __seq <= {upto_seq})
SELECT __key, __k, {", ".join(partials)}
FROM t WHERE __k >= {first_tile}
GROUP BY __key, __k
ORDER BY __key, __k
""".strip()


def latest_sql(plan: ViewPlan, start_us: int, end_us: int, upto_seq: int) -> str:
    """The latest event per entity: ``__key`` and ``__latest``, a struct of its time ``t``,
    ``seq`` ``s`` and the value ``vI`` of each latest feature I (one aggregate for all)."""
    members = ", ".join(f"v{i} := {quote('v_' + f.field)}" for i, f in enumerate(plan.latest))
    return f"""
WITH ev AS ({source_events_sql(plan)})
SELECT __key, arg_max_null(struct_pack(t := __et, s := __seq, {members}), {_ORDER}) AS __latest
FROM ev
WHERE __et >= {start_us} AND __et < {end_us} AND __seq <= {upto_seq}
GROUP BY __key
ORDER BY __key
""".strip()


def entity_keys_sql(plan: ViewPlan, start_us: int, end_us: int, upto_seq: int) -> str:
    """Every entity with an event of the view in the range, tiles or not (as streaming keeps
    the state of an entity whose tiles have all aged out)."""
    return f"""
WITH ev AS ({source_events_sql(plan)})
SELECT DISTINCT __key FROM ev
WHERE __et >= {start_us} AND __et < {end_us} AND __seq <= {upto_seq}
""".strip()
