"""The aggregation algebra: the single source of truth for what each function means.

Every function is a mergeable partial aggregate with four operations::

    init()                       the partial of no events
    update(p, value, time, seq)  fold one event in (value is never None here)
    merge(a, b)                  combine two partials (associative, commutative)
    finalize(p)                  the feature value

The streaming runtime keeps partials per tile and merges tiles at read time; the
batch runtime's SQL (``crmfs.runtimes.batch.sql``) computes the same quantities, and
the property tests hold both to a pure-Python reference of the semantics.

Partials are plain lists and scalars so they serialize with msgpack. Null values are
ignored by every function (``count`` without a field counts events). Ordering for
``last`` and ``last_n`` is by (event_time, seq): later events, then later ingested, win.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from typing import Any

from crmfs.definitions import Function

Partial = Any


class Aggregator:
    """Base: subclasses implement the algebra for one function."""

    function: Function
    # True if ``update(p, value, time, seq)`` is ``p + 1`` whatever the event: the streaming
    # fold then adds one itself instead of calling ``update``.
    adds_one_per_event = False

    def init(self) -> Partial:
        raise NotImplementedError  # every concrete aggregator overrides it

    def update(self, partial: Partial, value: Any, time: int, seq: int) -> Partial:
        raise NotImplementedError  # every concrete aggregator overrides it

    def merge(self, a: Partial, b: Partial) -> Partial:
        raise NotImplementedError  # every concrete aggregator overrides it

    def finalize(self, partial: Partial) -> Any:
        return partial

    def merge_all(self, partials: list[Partial]) -> Partial:
        """``merge`` folded over many partials (subclasses do it in one step, for reads)."""
        result = self.init()
        for partial in partials:
            result = self.merge(result, partial)
        return result

    def read(self, partials: list[Partial]) -> Any:
        """The feature value of the merged partials: ``finalize(merge_all(partials))``."""
        return self.finalize(self.merge_all(partials))


class Count(Aggregator):
    function = Function.COUNT
    adds_one_per_event = True

    def init(self) -> int:
        return 0

    def update(self, partial: int, value: Any, time: int, seq: int) -> int:
        return partial + 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def merge_all(self, partials: list[int]) -> int:
        return sum(partials)

    def read(self, partials: list[int]) -> int:
        return sum(partials)  # finalize is the identity


class Sum(Aggregator):
    function = Function.SUM

    def init(self) -> int:
        return 0

    def update(self, partial: Any, value: Any, time: int, seq: int) -> Any:
        return partial + value

    def merge(self, a: Any, b: Any) -> Any:
        return a + b

    def merge_all(self, partials: list[Any]) -> Any:
        return sum(partials, self.init())

    def read(self, partials: list[Any]) -> Any:
        return sum(partials, self.init())  # finalize is the identity


class FloatSum(Sum):
    """A sum of a float field is a float even when no events were seen."""

    def init(self) -> float:  # type: ignore[override]  # float, not int
        return 0.0


class Mean(Aggregator):
    function = Function.MEAN

    def init(self) -> list[Any]:
        return [0, 0]

    def update(self, partial: list[Any], value: Any, time: int, seq: int) -> list[Any]:
        return [partial[0] + value, partial[1] + 1]

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return [a[0] + b[0], a[1] + b[1]]

    def merge_all(self, partials: list[list[Any]]) -> list[Any]:
        return [sum(map(_first, partials)), sum(map(_second, partials))]

    def read(self, partials: list[list[Any]]) -> float | None:
        return self.finalize(self.merge_all(partials)) if partials else None

    def finalize(self, partial: list[Any]) -> float | None:
        total, count = partial
        # float(total) first: the SQL side divides a double by a count, so must we.
        return float(total) / count if count else None


class Min(Aggregator):
    function = Function.MIN

    def init(self) -> None:
        return None

    def update(self, partial: Any, value: Any, time: int, seq: int) -> Any:
        return value if partial is None or value < partial else partial

    def merge(self, a: Any, b: Any) -> Any:
        if a is None:
            return b
        if b is None:
            return a
        return b if b < a else a

    def merge_all(self, partials: list[Any]) -> Any:
        present = [p for p in partials if p is not None]
        return min(present) if present else None


class Max(Min):
    function = Function.MAX

    def update(self, partial: Any, value: Any, time: int, seq: int) -> Any:
        return value if partial is None or value > partial else partial

    def merge(self, a: Any, b: Any) -> Any:
        if a is None:
            return b
        if b is None:
            return a
        return b if b > a else a

    def merge_all(self, partials: list[Any]) -> Any:
        present = [p for p in partials if p is not None]
        return max(present) if present else None


class CountDistinct(Aggregator):
    """Exact distinct count: the partial is the list of distinct values."""

    function = Function.COUNT_DISTINCT

    def init(self) -> list[Any]:
        return []

    def update(self, partial: list[Any], value: Any, time: int, seq: int) -> list[Any]:
        if value not in partial:
            partial.append(value)
        return partial

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        if not b:
            return a
        if not a:
            return b
        return list(set(a).union(b))

    def merge_all(self, partials: list[list[Any]]) -> list[Any]:
        return list(set().union(*partials))

    def read(self, partials: list[list[Any]]) -> int:
        return len(set().union(*partials))

    def finalize(self, partial: list[Any]) -> int:
        return len(partial)


class Last(Aggregator):
    """The latest value: the partial is ``[time, seq, value]`` of the latest event."""

    function = Function.LAST

    def init(self) -> None:
        return None

    def update(self, partial: list[Any] | None, value: Any, time: int, seq: int) -> list[Any]:
        if partial is None or (time, seq) > (partial[0], partial[1]):
            return [time, seq, value]
        return partial

    def merge(self, a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
        if a is None:
            return b
        if b is None:
            return a
        return b if (b[0], b[1]) > (a[0], a[1]) else a

    def merge_all(self, partials: list[list[Any] | None]) -> list[Any] | None:
        present = [p for p in partials if p is not None]
        return max(present, key=_order) if present else None

    def finalize(self, partial: list[Any] | None) -> Any:
        return None if partial is None else partial[2]


class LastN(Aggregator):
    """The n latest values, newest first: the partial is ``[[time, seq, value], ...]``."""

    function = Function.LAST_N

    def __init__(self, n: int) -> None:
        self.n = n

    def init(self) -> list[list[Any]]:
        return []

    def update(self, partial: list[list[Any]], value: Any, time: int, seq: int) -> list[list[Any]]:
        if len(partial) >= self.n and (time, seq) <= (partial[-1][0], partial[-1][1]):
            return partial
        if not partial or (time, seq) > (partial[0][0], partial[0][1]):
            partial.insert(0, [time, seq, value])  # the usual case: the newest so far
        else:
            partial.append([time, seq, value])
            partial.sort(key=_newest_first)
        del partial[self.n :]
        return partial

    def merge(self, a: list[list[Any]], b: list[list[Any]]) -> list[list[Any]]:
        if not b:
            return a
        if not a:
            return b
        merged = sorted(a + b, key=_newest_first)
        return merged[: self.n]

    def merge_all(self, partials: list[list[list[Any]]]) -> list[list[Any]]:
        if len(partials) == 1:
            return partials[0]  # a partial is already the n newest, newest first
        # Entries compare as (time, seq, ...): seqs are unique, so the value is never reached
        # and no key function is needed (twice as fast as sorting by a key). Reads get the
        # partials of one decoded state, whose entries are all tuples or all lists.
        merged = sorted(itertools.chain.from_iterable(partials), reverse=True)
        return merged[: self.n]

    def read(self, partials: list[list[list[Any]]]) -> list[Any]:
        return [entry[2] for entry in self.merge_all(partials)]

    def finalize(self, partial: list[list[Any]]) -> list[Any]:
        return [entry[2] for entry in partial]


# (event_time, seq) of an entry ``[time, seq, value]``: later events, then later ingested.
_order: Callable[[list[Any]], tuple[int, int]] = operator.itemgetter(0, 1)
_first: Callable[[list[Any]], Any] = operator.itemgetter(0)
_second: Callable[[list[Any]], Any] = operator.itemgetter(1)


def _newest_first(entry: list[Any]) -> tuple[int, int]:
    return (-entry[0], -entry[1])


def aggregator_for(
    function: Function, n: int | None = None, float_field: bool = False
) -> Aggregator:
    """The aggregator implementing ``function``."""
    if function is Function.LAST_N:
        assert n is not None  # checked when the definition was loaded
        return LastN(n)
    if function is Function.SUM and float_field:
        return FloatSum()
    return _SIMPLE[function]()


_SIMPLE: dict[Function, type[Aggregator]] = {
    Function.COUNT: Count,
    Function.SUM: Sum,
    Function.MEAN: Mean,
    Function.MIN: Min,
    Function.MAX: Max,
    Function.COUNT_DISTINCT: CountDistinct,
    Function.LAST: Last,
}
