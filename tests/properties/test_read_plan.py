"""The compiled online read is reused while a read's tile bounds stay the same.

``ReadPlan.read_at`` keeps the read of the last ``(now // quantum, (now - 1) // quantum)``:
two times with that pair equal must have equal bounds, or a read would use the tiles of
another time. Hops and windows here are coprime-ish seconds, so the quantum is small and
times cross its multiples often.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crmfs.definitions import Aggregation, Entity, EventSource, FeatureView, Function, Latest
from crmfs.runtimes.streaming.reader import ReadPlan
from crmfs.runtimes.streaming.state import compacted
from crmfs.transform.plan import plan_view

S = 1_000_000
source = EventSource(
    "clicks",
    schema={"event_id": "string", "ts": "timestamp", "user_id": "string", "page": "string"},
    event_id="event_id",
    event_time="ts",
)
VIEW = FeatureView(
    "clicks_by_user",
    Entity("user", join_key="user_id"),
    source,
    features=[
        Aggregation("clicks", "count", ["90s", "7m"], hop="30s"),
        Aggregation("pages", "count_distinct", ["10m"], field="page", hop="4m"),
        Aggregation("recent", "last_n", ["1h"], field="page", n=2, hop="6m"),
        Latest("page_now", "page"),
    ],
    ttl="1h",
)
PLAN = plan_view(VIEW)
times = st.integers(-(10**12), 10**13)


@given(times, st.integers(-5 * S, 5 * S))
def test_times_sharing_a_span_share_their_bounds(now: int, delta: int) -> None:
    plan = ReadPlan(PLAN)
    other = now + delta
    q = plan.quantum
    if (now // q, (now - 1) // q) == (other // q, (other - 1) // q):
        assert plan.bounds(now) == plan.bounds(other)


def _state(now: int) -> list[object]:
    """Tiles around ``now`` in every hop group, each with a partial for each feature."""
    groups = []
    for group in PLAN.hop_groups:
        last = (now - 1) // group.hop_us
        tiles = {}
        for k in range(last - 4, last + 2):
            partials: list[object] = []
            for w in group.features:
                match w.feature.function:
                    case Function.COUNT:
                        partials.append(k % 3 + 1)
                    case Function.COUNT_DISTINCT:
                        partials.append([f"p{k % 2}", f"q{k % 5}"])
                    case _:
                        partials.append([[k * group.hop_us, k % 7, f"p{k}"]])
            tiles[k] = partials
        groups.append(tiles)
    return compacted([groups, [[now - 5 * S, 0, "home"]]])


@given(st.lists(times, min_size=1, max_size=6), st.lists(st.integers(0, 3 * 60 * S), max_size=4))
def test_a_reused_read_equals_a_new_one(starts: list[int], steps: list[int]) -> None:
    plan = ReadPlan(PLAN)
    for start in starts:
        for now in [start, *(start + step for step in steps)]:
            state = _state(start)
            fresh = ReadPlan(PLAN).factory(plan.bounds(now))(state, now)
            assert plan.read_at(now)(state, now) == fresh
