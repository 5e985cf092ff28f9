"""Point-in-time features by one sort: events and entity rows interleaved, then window frames.

The range-join plan (``sql.point_in_time_sql``) joins every entity row to every event of its
key inside the widest window, so its cost grows with rows x events per key. This plan instead
puts the events and the entity rows in one relation, sorted per key by event time, and reads
each entity row's features from a window frame that ends at the row and starts after its
window's lower bound ``L``::

    RANGE BETWEEN (t - L - 1) PRECEDING AND CURRENT ROW   -- L < event_time <= t

Entity rows carry no values, so the aggregates only see events; an event at exactly ``t`` is
a peer of the row and is counted, as the semantics say. Latest values are the last event at or
before ``t`` in (event_time, seq) order, found by a running ``last_value(... IGNORE NULLS)``,
and dropped when older than the TTL. The cost is one sort of (events + rows), whatever the
window lengths, which wins when the entity rows are many. Windows that are short next to the
history (the engine decides) are still cheaper by the range join's aggregates over just their
own window, so those run as a join on the side and come back by ``__row``.

It answers event-time queries only: an ``as_served`` query also needs ``ingested_at <= t``,
a second condition a sorted frame cannot express, so it runs on the range-join plan.

The list plan (``list_pit``) is faster for most data; the engine comes here where a few keys
hold both very many events and very many rows, whose work in the list plan grows as the
product of the two and here stays one sort.
"""

from __future__ import annotations

from crmfs.definitions import FieldType, Function
from crmfs.runtimes.batch.sql import (
    empty_value_sql,
    floor_to,
    quote,
    source_events_sql,
    window_aggregate_sql,
)
from crmfs.transform.plan import PlannedWindow, ViewPlan

# Entity rows sort after every event with the same time: they see the events at ``t``.
_AFTER_EVENTS = 9223372036854775807
# The (event_time, seq) order as one comparable value (seq stays below 10^12), computed from
# the sorted columns rather than carried through the sort.
_SORTED_ORDER = "(CAST(__o AS HUGEINT) * 1000000000000 + __s)"


def _frame(offset_column: str) -> str:
    return (
        f"(PARTITION BY __key ORDER BY __o RANGE BETWEEN {offset_column} PRECEDING AND CURRENT ROW)"
    )


class _Aggregates:
    """Window aggregates computed once each (a mean shares its sum and count), as ``__aN``."""

    def __init__(self) -> None:
        self.columns: dict[str, str] = {}

    def __call__(self, aggregate: str, frame: str) -> str:
        return self.columns.setdefault(f"{aggregate} OVER {frame}", f"__a{len(self.columns)}")


def _window_expression(w: PlannedWindow, frame: str, over: _Aggregates) -> str:
    """The feature's value from the frame aggregates it needs (registered in ``over``)."""
    f = w.feature
    v = quote("v_" + f.field) if f.field else "__n"
    match f.function:
        case Function.COUNT:
            return over(f"count({v})", frame)
        case Function.SUM:
            kind, zero = ("BIGINT", "0") if f.output_type is FieldType.INT else ("DOUBLE", "0.0")
            return f"coalesce(CAST({over(f'sum({v})', frame)} AS {kind}), {zero})"
        case Function.MEAN:
            total, count = over(f"sum({v})", frame), over(f"count({v})", frame)
            return f"CAST({total} AS DOUBLE) / nullif({count}, 0)"
        case Function.MIN:
            return over(f"min({v})", frame)
        case Function.MAX:
            return over(f"max({v})", frame)
        case Function.COUNT_DISTINCT:
            return over(f"count(DISTINCT {v})", frame)
        case Function.LAST:
            return over(f"arg_max({v}, {_SORTED_ORDER}) FILTER (WHERE {v} IS NOT NULL)", frame)
        case Function.LAST_N:
            values = over(
                f"max_by({v}, {_SORTED_ORDER}, {f.n}) FILTER (WHERE {v} IS NOT NULL)", frame
            )
            return f"coalesce({values}, {empty_value_sql(w)})"
    raise AssertionError(f.function)


def _joined_sql(plan: ViewPlan, features: list[PlannedWindow], in_part: str) -> str:
    """Short windows by the range join: each row joined to the events of its own windows."""
    bounds = [floor_to(f"__t - {w.window_us}", w.hop_us) for w in features]
    columns = [
        f"{window_aggregate_sql(plan, w, f'__et > __l{i}')} AS {quote(w.feature.name)}"
        for i, w in enumerate(features)
    ]
    lowest = bounds[0] if len(bounds) == 1 else f"least({', '.join(bounds)})"
    return f"""
SELECT q.__row, {", ".join(columns)}
FROM (
    SELECT __row, __key, __t, {", ".join(f"{b} AS __l{i}" for i, b in enumerate(bounds))},
        {lowest} AS __lowest
    FROM entity_rows WHERE {in_part}
) q
JOIN ev ON ev.__key = q.__key AND ev.__et <= q.__t AND ev.__et > q.__lowest
GROUP BY q.__row"""


def _joined_output(w: PlannedWindow) -> str:
    name = quote(w.feature.name)
    empty = empty_value_sql(w)
    return f"coalesce(j.{name}, {empty}) AS {name}" if empty else f"j.{name}"


def sorted_point_in_time_sql(
    plan: ViewPlan, part: int = 0, parts: int = 1, joined: frozenset[str] = frozenset()
) -> str:
    """Each row of ``entity_rows(__row, __key, __t)``: features at ``__t``, by event time.

    Rows come out in no particular order (``__row`` says which is which).

    With ``parts > 1`` only the keys whose hash falls in partition ``part`` are computed, so
    a large training set can be built a slice of keys at a time in bounded memory.
    ``joined`` names window features to compute by a range join instead of a frame: over
    a window short next to the history the join touches few events, and it spares the
    frame's own cost (a distinct count over a frame needs a merge-sort tree).
    """
    joined_windows = [w for w in plan.windows if w.feature.name in joined]
    framed = [w for w in plan.windows if w not in joined_windows]
    in_part = "TRUE" if parts == 1 else f"hash(__key) % {parts} = {part}"
    pairs = dict.fromkeys((w.window_us, w.hop_us) for w in framed)
    offsets = {pair: f"__d{i}" for i, pair in enumerate(pairs)}
    row_offsets = [
        f"__t - {floor_to(f'__t - {wu}', hu)} - 1 AS {name}" for (wu, hu), name in offsets.items()
    ]
    event_offsets = [f"0 AS {name}" for name in offsets.values()]
    # Only window fields travel as columns through the sort; latest values ride in one struct.
    window_fields = {w.feature.field for w in framed if w.feature.field is not None}
    values = [quote("v_" + f) for f in sorted(window_fields)]
    latest_struct = ""
    if plan.latest:
        members = ", ".join(f"v{i} := {quote('v_' + f.field)}" for i, f in enumerate(plan.latest))
        latest_struct = f", struct_pack(t := __et, {members}) AS __latest"
    over = _Aggregates()
    framed_values = {
        w.feature.name: _window_expression(w, _frame(offsets[(w.window_us, w.hop_us)]), over)
        for w in framed
    }
    outputs = [f"{expression} AS {alias}" for expression, alias in over.columns.items()]
    if plan.latest:
        outputs.append(
            "last_value(__latest IGNORE NULLS) OVER (PARTITION BY __key ORDER BY __o, __s"
            " ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __last"
        )
    fresh = "TRUE" if plan.ttl_us is None else f"__last.t >= __o - {plan.ttl_us}"
    finals = [
        _joined_output(w)
        if w in joined_windows
        else f"{framed_values[w.feature.name]} AS {quote(w.feature.name)}"
        for w in plan.windows
    ]
    finals += [
        f"CASE WHEN {fresh} THEN __last.v{i} END AS {quote(f.name)}"
        for i, f in enumerate(plan.latest)
    ]
    event_columns = ", ".join(
        [
            "__key",
            "__et AS __o",
            "__seq AS __s",
            "1 AS __n",
            *values,
            *event_offsets,
        ]
    )
    row_columns = ", ".join(
        ["__key", "__t AS __o", f"{_AFTER_EVENTS} AS __s", "__row", *row_offsets]
    )
    joins = ""
    if joined_windows:
        joins = f"\n    LEFT JOIN ({_joined_sql(plan, joined_windows, in_part)}\n) j USING (__row)"
    return f"""
WITH ev AS NOT MATERIALIZED ({source_events_sql(plan)}),
u AS (
    SELECT {event_columns}{latest_struct} FROM ev WHERE {in_part}
    UNION ALL BY NAME
    SELECT {row_columns} FROM entity_rows WHERE {in_part}
),
w AS (SELECT __row, __o, {", ".join(outputs or ["NULL AS __none"])} FROM u)
SELECT __row, {", ".join(finals)}
FROM (SELECT * FROM w WHERE __row IS NOT NULL) w{joins}
""".strip()
