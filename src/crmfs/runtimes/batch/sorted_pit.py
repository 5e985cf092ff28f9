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
window lengths, which wins when the entity rows are many.

It answers event-time queries only: an ``as_served`` query also needs ``ingested_at <= t``,
a second condition a sorted frame cannot express, so it runs on the range-join plan.
"""

from __future__ import annotations

from crmfs.definitions import FieldType, Function
from crmfs.runtimes.batch.sql import empty_value_sql, floor_to, quote, source_events_sql
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


def _window_expression(w: PlannedWindow, frame: str) -> str:
    f = w.feature
    v = quote("v_" + f.field) if f.field else "__n"
    over = f"OVER {frame}"
    match f.function:
        case Function.COUNT:
            return f"count({v}) {over}"
        case Function.SUM:
            if f.output_type is FieldType.INT:
                return f"coalesce(CAST(sum({v}) {over} AS BIGINT), 0)"
            return f"coalesce(CAST(sum({v}) {over} AS DOUBLE), 0.0)"
        case Function.MEAN:
            return f"CAST(sum({v}) {over} AS DOUBLE) / nullif(count({v}) {over}, 0)"
        case Function.MIN:
            return f"min({v}) {over}"
        case Function.MAX:
            return f"max({v}) {over}"
        case Function.COUNT_DISTINCT:
            return f"count(DISTINCT {v}) {over}"
        case Function.LAST:
            return f"arg_max({v}, {_SORTED_ORDER}) FILTER (WHERE {v} IS NOT NULL) {over}"
        case Function.LAST_N:
            empty = empty_value_sql(w)
            return (
                f"coalesce(max_by({v}, {_SORTED_ORDER}, {f.n}) FILTER (WHERE {v} IS NOT NULL) {over},"
                f" {empty})"
            )
    raise AssertionError(f.function)


def _joined_distinct_sql(plan: ViewPlan, features: list[PlannedWindow], in_part: str) -> str:
    """Exact distinct counts of short windows, by joining each row to its window's events."""
    bounds = [floor_to(f"__t - {w.window_us}", w.hop_us) for w in features]
    columns = [
        f"count(DISTINCT {quote('v_' + str(w.feature.field))})"
        f" FILTER (WHERE __et > __l{i}) AS {quote(w.feature.name)}"
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


def sorted_point_in_time_sql(
    plan: ViewPlan, part: int = 0, parts: int = 1, joined: frozenset[str] = frozenset()
) -> str:
    """Each row of ``entity_rows(__row, __key, __t)``: features at ``__t``, by event time.

    Rows come out in no particular order (``__row`` says which is which).

    With ``parts > 1`` only the keys whose hash falls in partition ``part`` are computed, so
    a large training set can be built a slice of keys at a time in bounded memory.
    ``joined`` names ``count_distinct`` features to compute by a range join instead of a
    frame (a distinct count over a frame needs a costly merge-sort tree; over a window short
    next to the history, the join touches few events).
    """
    joined_windows = [
        w
        for w in plan.windows
        if w.feature.name in joined and w.feature.function is Function.COUNT_DISTINCT
    ]
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
    outputs = [
        f"{_window_expression(w, _frame(offsets[(w.window_us, w.hop_us)]))}"
        f" AS {quote(w.feature.name)}"
        for w in framed
    ]
    if plan.latest:
        outputs.append(
            "last_value(__latest IGNORE NULLS) OVER (PARTITION BY __key ORDER BY __o, __s"
            " ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __last"
        )
    fresh = "TRUE" if plan.ttl_us is None else f"__last.t >= __o - {plan.ttl_us}"
    finals = [
        f"coalesce(j.{quote(w.feature.name)}, 0) AS {quote(w.feature.name)}"
        if w in joined_windows
        else f"w.{quote(w.feature.name)}"
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
        joins = f"\n    LEFT JOIN ({_joined_distinct_sql(plan, joined_windows, in_part)}\n) j USING (__row)"
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
