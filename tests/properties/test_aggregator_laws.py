"""Laws of the aggregation algebra that the runtimes rely on.

The compiled online read finalizes a window with one tile directly, so ``read([p])`` must
equal ``finalize(p)``; tiles merge in any grouping, so ``merge`` is associative and
commutative. Partials are checked as folded (lists) and as read back from msgpack (tuples).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from crmfs.definitions import Function
from crmfs.runtimes.streaming.state import decode_frozen, encode
from crmfs.transform.aggregators import Aggregator, aggregator_for

AGGREGATORS = [
    aggregator_for(Function.COUNT),
    aggregator_for(Function.SUM),
    aggregator_for(Function.SUM, float_field=True),
    aggregator_for(Function.MEAN),
    aggregator_for(Function.MIN),
    aggregator_for(Function.MAX),
    aggregator_for(Function.COUNT_DISTINCT),
    aggregator_for(Function.LAST),
    aggregator_for(Function.LAST_N, n=3),
]
# (time, seq, value) events; seqs are unique, as in the log
events = st.lists(st.tuples(st.integers(0, 50), st.integers(0, 5)), max_size=12).map(
    lambda pairs: [(t, seq, v) for seq, (t, v) in enumerate(pairs)]
)


def _fold(aggregator: Aggregator, stream: list[tuple[int, int, int]], float_values: bool) -> Any:
    partial = aggregator.init()
    for time, seq, value in stream:
        partial = aggregator.update(partial, float(value) if float_values else value, time, seq)
    return partial


def _frozen(partial: Any) -> Any:
    """The partial as a read sees it: through msgpack, lists become tuples."""
    return decode_frozen(encode([partial]))[0]


@given(stream=events)
def test_reading_one_partial_is_finalizing_it(stream: list[tuple[int, int, int]]) -> None:
    for aggregator in AGGREGATORS:
        partial = _fold(aggregator, stream, float_values=isinstance(aggregator.init(), float))
        assert aggregator.read([partial]) == aggregator.finalize(partial), aggregator
        frozen = _frozen(partial)
        assert aggregator.read([frozen]) == aggregator.finalize(frozen), aggregator


@given(a=events, b=events, c=events)
def test_merge_is_associative_and_commutative(
    a: list[tuple[int, int, int]], b: list[tuple[int, int, int]], c: list[tuple[int, int, int]]
) -> None:
    # seqs unique across the three streams
    b = [(t, s + 100, v) for t, s, v in b]
    c = [(t, s + 200, v) for t, s, v in c]
    for aggregator in AGGREGATORS:
        pa_, pb, pc = (_fold(aggregator, x, False) for x in (a, b, c))
        left = aggregator.finalize(aggregator.merge(aggregator.merge(pa_, pb), pc))
        right = aggregator.finalize(aggregator.merge(pa_, aggregator.merge(pb, pc)))
        swapped = aggregator.finalize(aggregator.merge(pb, pa_))
        assert left == right, aggregator
        assert swapped == aggregator.finalize(aggregator.merge(pa_, pb)), aggregator
        whole = aggregator.finalize(_fold(aggregator, a + b + c, False))
        assert aggregator.read([pa_, pb, pc]) == whole, aggregator
