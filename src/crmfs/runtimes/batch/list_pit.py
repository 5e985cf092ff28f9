"""Point-in-time features from each key's events as lists, sliced per entity row.

The events of a key, in (event_time, seq) order, become one row of lists: ``__ts`` holds the
event times and ``v_<field>`` each field the view reads (``key_lists``). An entity row at
``t`` joins its key's row and finds, for every window lower bound ``L`` it needs, how many
events are at or before it: ``hi`` at ``t`` itself, ``l`` at ``L``. The events of the window
``L < event_time <= t`` are then the list positions ``l + 1 .. hi``, and each feature is a list
function over that slice (``list_count``, ``list_sum``, ``list_distinct`` ...). The latest
event at or before ``t`` is the one at ``hi``.

Counting the events at or before each bound is one pass over the key's times per row: every
comparison ``x <= bound`` is a 0/1 number shifted into its own bit field of one integer, so
the sum over the list carries all the counts at once (``_positions``). The fields are wide
enough for the longest list, so no count spills into the next.

The cost is one sort of the events and, per row, work in proportion to its key's events: no
sort of the rows, no window frames, and no join fanning out to a row per event. It answers
event-time queries only: an ``as_served`` query also needs ``ingested_at <= t``, which breaks
the one order the lists are in, so it runs on the range-join plan.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crmfs.definitions import FieldType, Function
from crmfs.runtimes.batch.sql import empty_value_sql, floor_to, quote, source_events_sql
from crmfs.transform.plan import PlannedWindow, ViewPlan

_NOT_NULL = "lambda x: x IS NOT NULL"


# Rows per record batch of the key lists: DuckDB scans the batches in parallel, and the key
# lists are the side of the join it scans (see ``list_point_in_time_sql``).
KEY_BATCH_ROWS = 2048


def key_lists(db: duckdb.DuckDBPyConnection, plan: ViewPlan) -> tuple[pa.Table, int]:
    """A row per key with events: ``__key``, ``__ts`` and ``v_<field>``, lists in event order;
    and the length of the longest list.

    DuckDB sorts the events; the lists are the sorted columns cut at each change of key (Arrow
    list offsets over the same buffers), which is much cheaper than a list aggregate.
    """
    fields = [quote("v_" + f) for f in plan.value_fields()]
    events = db.sql(
        f"SELECT __key, __et, {', '.join(fields) or 'NULL AS __none'}"
        f" FROM ({source_events_sql(plan)}) ORDER BY __key, __et, __seq"
    ).to_arrow_table()
    keys = events.column("__key").combine_chunks()
    n = len(keys)
    if n == 0:
        starts = np.zeros(0, dtype=np.int64)
    else:
        changed = pc.not_equal(keys.slice(1), keys.slice(0, n - 1))
        starts = np.concatenate([[0], np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1])
    bounds = np.append(starts, n)
    longest = int(np.diff(bounds).max()) if n else 0
    offsets = pa.array(bounds.astype(np.int32 if n < 2**31 else np.int64))
    as_list = pa.ListArray if offsets.type == pa.int32() else pa.LargeListArray
    columns = {"__key": keys.take(pa.array(starts)), "__ts": events.column("__et")}
    columns.update({"v_" + f: events.column("v_" + f) for f in plan.value_fields()})
    table = pa.table(
        {
            name: column
            if name == "__key"
            else as_list.from_arrays(offsets, column.combine_chunks())
            for name, column in columns.items()
        }
    )
    batches = table.to_batches(max_chunksize=KEY_BATCH_ROWS)
    return pa.Table.from_batches(batches, schema=table.schema), longest


def _bounds(plan: ViewPlan) -> dict[tuple[int, int], str]:
    """Each distinct (window, hop): the name of its lower-bound position column."""
    pairs = dict.fromkeys((w.window_us, w.hop_us) for w in plan.windows)
    return {pair: f"__l{i}" for i, pair in enumerate(pairs)}


def _positions(names: list[str], longest: int) -> tuple[list[str], list[str]]:
    """How many of ``__ts`` are ``<=`` each bound column ``_<name>``, as SQL: the sums (one
    pass over the list each) and the columns ``name`` decoded from them.

    Each count needs ``bits`` bits (it is at most ``longest``); the bounds share one sum per
    ``63 // bits`` of them.
    """
    bits = max(1, longest.bit_length())
    per_sum = max(1, 63 // bits)
    mask = (1 << bits) - 1
    sums, counts = [], []
    for start in range(0, len(names), per_sum):
        chunk = names[start : start + per_sum]
        terms = " + ".join(
            f"(x <= _{name})::BIGINT" + (f" * {1 << (bits * i)}" if i else "")
            for i, name in enumerate(chunk)
        )
        sums.append(
            f"CAST(list_sum(list_transform(__ts, lambda x: {terms})) AS BIGINT) AS __s{start}"
        )
        counts += [f"(__s{start} >> {bits * i}) & {mask} AS {name}" for i, name in enumerate(chunk)]
    return sums, counts


def _window_value(w: PlannedWindow, low: str) -> str:
    """The feature over list positions ``low + 1 .. __hi`` of its field's list."""
    f = w.feature
    if f.field is None:  # count of events
        return f"__hi - {low}"
    values = f"list_slice({quote('v_' + f.field)}, {low} + 1, __hi)"
    match f.function:
        case Function.COUNT:
            return f"list_count({values})"
        case Function.SUM:  # an empty slice sums to NULL: the caller's coalesce makes it 0
            if f.output_type is FieldType.INT:
                return f"CAST(list_sum({values}) AS BIGINT)"
            return f"list_sum({values})"
        case Function.MEAN:
            return f"CAST(list_sum({values}) AS DOUBLE) / nullif(list_count({values}), 0)"
        case Function.MIN:
            return f"list_min({values})"
        case Function.MAX:
            return f"list_max({values})"
        case Function.COUNT_DISTINCT:
            return f"len(list_distinct({values}))"
        case Function.LAST:
            return f"list_extract(list_filter({values}, {_NOT_NULL}), -1)"
        case Function.LAST_N:
            return f"list_reverse(list_slice(list_filter({values}, {_NOT_NULL}), -{f.n}, -1))"
    raise AssertionError(f.function)


def list_point_in_time_sql(plan: ViewPlan, longest: int) -> str:
    """Features of the entity rows at their times ``__t``, by event time.

    Reads ``entity_rows(__row, __key, __t)`` and ``key_events`` (``key_lists``) whose longest
    list has ``longest`` events. Rows come out in ``__row`` order: DuckDB sorts them in
    parallel, faster than reordering the result in Arrow.

    Run it with DuckDB's ``build_side_probe_side`` optimizer off, so that the join builds its
    hash table over the entity rows and streams the key lists through it: each list then
    reaches the output without a copy per entity row, which is what costs most otherwise.
    """
    bounds = _bounds(plan)
    bound_exprs = {"__hi": "__t"}
    bound_exprs.update({name: floor_to(f"__t - {wu}", hu) for (wu, hu), name in bounds.items()})
    sums, counts = _positions(list(bound_exprs), longest)
    finals = []
    for w in plan.windows:
        value = _window_value(w, bounds[(w.window_us, w.hop_us)])
        empty = empty_value_sql(w)
        finals.append(
            f"coalesce({value}, {empty}) AS {quote(w.feature.name)}"
            if empty
            else f"{value} AS {quote(w.feature.name)}"
        )
    fresh = "__hi > 0" if plan.ttl_us is None else f"__hi > 0 AND __ts[__hi] >= __t - {plan.ttl_us}"
    finals += [
        f"CASE WHEN {fresh} THEN {quote('v_' + f.field)}[__hi] END AS {quote(f.name)}"
        for f in plan.latest
    ]
    return f"""
WITH r AS (
    SELECT e.__row, e.__t, {", ".join(f"{expr} AS _{name}" for name, expr in bound_exprs.items())},
        k.* EXCLUDE (__key)
    FROM key_events k RIGHT JOIN entity_rows e ON k.__key = e.__key
),
s AS (SELECT *, {", ".join(sums)} FROM r),
p AS (SELECT *, {", ".join(counts)} FROM s)
SELECT __row, {", ".join(finals) or "NULL AS __none"} FROM p
ORDER BY __row
""".strip()
