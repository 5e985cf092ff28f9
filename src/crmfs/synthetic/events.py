"""Delivery effects shared by all event tables: arrival latency, late data, redeliveries."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from crmfs.synthetic.common import (
    I64,
    US_PER_HOUR,
    US_PER_MINUTE,
    US_PER_SECOND,
    Window,
    event_ids,
    timestamps,
)

LATE_SHARE = 0.03  # events held up in a queue or an offline device
DUPLICATE_SHARE = 0.01  # at-least-once delivery: the same event delivered twice
MEDIAN_LATENCY_S = 3.0
MAX_ON_TIME_LATENCY_US = 15 * US_PER_MINUTE
LATE_MIN_US = US_PER_HOUR
LATE_MAX_US = 48 * US_PER_HOUR
MEAN_REDELIVERY_US = 2 * US_PER_HOUR


def arrival_latency(rng: np.random.Generator, n: int) -> I64:
    """Delay between an event happening and the pipeline receiving it, in microseconds.

    Most events arrive within seconds to minutes (lognormal); a few percent arrive hours to two
    days late, which is what point-in-time correctness has to cope with.
    """
    on_time = rng.lognormal(np.log(MEDIAN_LATENCY_S), 1.3, size=n) * US_PER_SECOND
    latency = np.minimum(on_time, MAX_ON_TIME_LATENCY_US).astype(np.int64)
    late = rng.random(n) < LATE_SHARE
    latency[late] = rng.integers(LATE_MIN_US, LATE_MAX_US, size=int(late.sum()), dtype=np.int64)
    return latency


def deliver(
    rng: np.random.Generator,
    payload: pa.Table,
    event_time: I64,
    window: Window,
    id_prefix: str,
) -> tuple[pa.Table, I64]:
    """Turn generated events into the file as the pipeline received it by ``window.end``.

    Adds ``event_id``, ``event_time`` and ``arrival_time`` in front of ``payload``'s columns;
    drops events that had not arrived by the end of the window (the extract is taken then);
    redelivers about 1% of events -- same event id and content, arriving again later so the
    copy sits elsewhere in the file; and sorts rows by arrival time, as a log would be.
    Also returns, per output row, the index of the ``payload`` row it came from.
    """
    n = len(event_time)
    ids, numbers = event_ids(rng, id_prefix, n)
    arrival = event_time + arrival_latency(rng, n)
    kept = np.flatnonzero(arrival <= window.end_us)
    dup = kept[rng.random(len(kept)) < DUPLICATE_SHARE]
    # The redelivery is bounded by the end of the window, like any other arrival in the file.
    room = window.end_us - arrival[dup]
    delay = rng.exponential(MEAN_REDELIVERY_US, size=len(dup)).astype(np.int64)
    rows = np.concatenate([kept, dup])
    arrived = np.concatenate([arrival[kept], arrival[dup] + np.minimum(delay, room)])
    # Event id breaks arrival ties so the file order never depends on sort stability.
    order = np.lexsort((numbers[rows], arrived))
    rows, arrived = rows[order], arrived[order]
    take = pa.array(rows, pa.int64())
    out = payload.take(take)
    out = out.add_column(0, "arrival_time", timestamps(arrived))
    out = out.add_column(0, "event_time", timestamps(event_time[rows]))
    return out.add_column(0, "event_id", ids.take(take)), rows
