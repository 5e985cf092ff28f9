"""The probabilistic layer: a Fellegi-Sunter model over field comparisons.

Each ``Comparison`` turns a pair of records into an agreement level for one field: ``0`` for
disagreement, higher for closer agreement (the exact value is the highest), or "no evidence"
when either side is missing. The model holds, per comparison and level, ``m`` (how often true
matches show that level) and ``u`` (how often non-matches do); a pair's match weight is
``log2(lambda / (1 - lambda)) + sum(log2(m / u))`` over its comparisons, and its match
probability ``1 / (1 + 2**-weight)``.

``u`` of exact agreement is counted from how often each value occurs; the other levels' ``u``
from random pairs (nearly all of them non-matches); ``m`` by expectation maximisation over the
candidate pairs of each blocking rule in turn, leaving out the comparisons of the rule's own
columns, and averaged over the rules; ``lambda`` (the share of matches among all candidate
pairs) last, by EM with ``m`` and ``u`` held. Similarities are
computed in bulk by rapidfuzz.

**Term frequencies.** A comparison with ``term_frequency`` weighs an exact agreement by how
common the shared value is: agreeing on a surname one record in five carries is weak evidence,
on one carried by two records strong. The value's share among the fitted records replaces
``u`` of the exact level for that pair (the model's ``tf``); EM itself runs without it.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from rapidfuzz import distance, process

from crmfs.identity.normalize import first_name_forms, first_name_variants

Method = Literal["exact", "jaro_winkler", "ratio", "date", "first_name"]
MISSING = -1
_FLOOR = 1e-6  # no probability is taken as exactly 0 or 1


@dataclass(frozen=True)
class Comparison:
    """Agreement levels of one field.

    ``thresholds`` are similarity cut-offs in decreasing order (0..1): level ``len + 1`` is
    an exact match, level ``len - i`` a similarity at or above ``thresholds[i]``, level 0
    anything else. ``date`` compares ``YYYY-MM-DD`` strings: exact, or one of day, month
    and year differing (a typo) or day and month swapped, else disagreement. ``first_name``
    is Jaro-Winkler with two more levels: the names are nicknames of one another (``bob``
    and ``robert``), just below exact; and, just above disagreement, one side is only an
    initial that the other starts with (``e`` from ``emuller@``, and ``elizabeth``).

    ``agreement_only``: disagreement (level 0) weighs nothing either way, for identifiers a
    person may hold several of (email addresses, phone numbers): sharing one says much,
    holding different ones says little. Its m and u are still estimated.
    """

    name: str
    column: str
    method: Method = "jaro_winkler"
    thresholds: tuple[float, ...] = ()
    term_frequency: bool = False
    agreement_only: bool = False

    @property
    def levels(self) -> int:
        if self.method == "date":
            return 3
        return len(self.thresholds) + 2 + 2 * (self.method == "first_name")

    def _similar_levels(self, value: str, others: Sequence[str]) -> np.ndarray:
        """Levels below exact of ``value`` against each of ``others`` (all present, none
        equal to it)."""
        return self._levels_of([value] * len(others), others, workers=1)

    def _levels_of(self, left: Sequence[str], right: Sequence[str], workers: int) -> np.ndarray:
        similarity = process.cpdist(left, right, scorer=_SCORERS[self.method], workers=workers)
        level = np.zeros(len(left), dtype=np.int8)
        for i, cut in enumerate(self.thresholds):
            found = (level == 0) & (similarity >= cut)
            level[found] = len(self.thresholds) - i
        if self.method == "first_name":
            level[level > 0] += 1  # level 1: an initial
            initial = np.fromiter(
                (_initial_agrees(a, b) for a, b in zip(left, right, strict=True)),
                bool,
                len(left),
            )
            level[initial] = 1
            nick = np.fromiter(
                (_nicknames_meet(a, b) for a, b in zip(left, right, strict=True)),
                bool,
                len(left),
            )
            level[nick] = len(self.thresholds) + 2
        return level

    def compare(self, left: Sequence[str | None], right: Sequence[str | None]) -> np.ndarray:
        """The level of each pair ``(left[i], right[i])``, ``MISSING`` where a side is
        (None or empty)."""
        n = len(left)
        codes = Coded.of(
            np.concatenate([np.asarray(left, dtype=object), np.asarray(right, dtype=object)])
        )
        return self.compare_coded(codes, np.arange(n), np.arange(n, 2 * n))

    def compare_one(
        self, value: str | None, others: Sequence[str | None] | np.ndarray
    ) -> np.ndarray:
        """The level of ``value`` against each of ``others``: the same as ``compare`` with
        ``value`` repeated, without coding the values first (cheaper for one record)."""
        rest = np.asarray(others, dtype=object)
        out = np.full(len(rest), MISSING, dtype=np.int8)
        if not value or len(rest) == 0:
            return out
        present = np.fromiter(map(bool, rest), bool, len(rest))
        exact = present & (rest == value).astype(bool)
        out[present] = 0
        out[exact] = self.levels - 1
        inexact = np.flatnonzero(present & ~exact)
        if self.method == "exact" or len(inexact) == 0:
            return out
        if self.method == "date":
            mine = _date_parts(value)
            if mine[0] >= 0:
                near = [_near_parts(mine, _date_parts(other)) for other in rest[inexact]]
                out[inexact] = np.asarray(near, dtype=np.int8)
            return out
        out[inexact] = self._similar_levels(value, list(rest[inexact]))
        return out

    def compare_coded(self, coded: Coded, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """The level of each pair of records ``(left[i], right[i])`` of one coded column.

        Presence and exact agreement are integer comparisons; where few values make many
        pairs (names, cities), a similarity is computed once per distinct pair of values."""
        lhs, rhs = coded.codes[left], coded.codes[right]
        out = np.full(len(lhs), MISSING, dtype=np.int8)
        present = (lhs >= 0) & (rhs >= 0)
        exact = present & (lhs == rhs)
        out[present] = 0
        out[exact] = self.levels - 1
        inexact = np.flatnonzero(present & ~exact)
        if self.method == "exact" or len(inexact) == 0:
            return out
        if self.method == "date":  # cheap enough per pair: no need to find distinct pairs
            out[inexact] = coded.near_dates(lhs[inexact], rhs[inexact])
            return out
        size = len(coded.values)
        lhs, rhs = lhs[inexact], rhs[inexact]
        workers = -1 if len(inexact) >= _PARALLEL_PAIRS else 1
        if size * size > _REPEATS * len(inexact) and self.method != "first_name":
            # Too many possible pairs of values for many to repeat: finding the distinct
            # ones would cost more than it saves.
            values = coded.values
            out[inexact] = self._levels_of(values[lhs].tolist(), values[rhs].tolist(), workers)
            return out
        # Distinct pairs of values by hashing (pandas), each compared once.
        back, distinct = pd.factorize(lhs.astype(np.int64) * size + rhs)
        a, b = distinct // size, distinct % size
        level = self._levels_of(coded.values[a].tolist(), coded.values[b].tolist(), workers)
        out[inexact] = level[back]
        return out


@dataclass(frozen=True)
class Coded:
    """A column as integer codes into its distinct values (-1: missing or empty)."""

    codes: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, column: Sequence[str | None] | np.ndarray) -> Coded:
        codes, values = pd.factorize(np.asarray(column, dtype=object), use_na_sentinel=True)
        values = np.asarray(values, dtype=object)
        empty = np.flatnonzero(values == "")
        if len(empty):
            codes[codes == empty[0]] = -1
        return cls(codes, values)

    @functools.cached_property
    def date_parts(self) -> np.ndarray:
        """Year, month and day of each value read as ``YYYY-MM-DD`` (-1s where it is not
        one): ASCII ``dddd-dd-dd`` in bulk as characters, anything else one at a time."""
        parts = np.full((len(self.values), 3), -1, dtype=np.int64)
        text = np.asarray(
            [v if isinstance(v, str) and len(v) == 10 and v.isascii() else "" for v in self.values]
        )
        if len(text) == 0:
            return parts
        chars = text.astype("U10").view(np.uint32).reshape(-1, 10).astype(np.int64) - ord("0")
        digits = np.delete(chars, (4, 7), axis=1)
        ok = ((digits >= 0) & (digits <= 9)).all(axis=1)
        ok &= (chars[:, 4] == ord("-") - ord("0")) & (chars[:, 7] == ord("-") - ord("0"))
        place = np.array([1000, 100, 10, 1, 10, 1, 10, 1])
        weighted = digits * place
        found = np.stack(
            [
                weighted[:, :4].sum(axis=1),
                weighted[:, 4:6].sum(axis=1),
                weighted[:, 6:].sum(axis=1),
            ],
            axis=1,
        )
        parts[ok] = found[ok]
        for k in np.flatnonzero(~ok):
            parts[k] = _date_parts(self.values[k])
        return parts

    def near_dates(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """For value codes ``a``, ``b`` of ``YYYY-MM-DD`` dates: one of year, month and day
        differs, or day and month are swapped."""
        pa, pb = self.date_parts[a], self.date_parts[b]
        valid = (pa[:, 0] >= 0) & (pb[:, 0] >= 0)
        same = (pa == pb).sum(axis=1)
        swapped = (pa[:, 0] == pb[:, 0]) & (pa[:, 1] == pb[:, 2]) & (pa[:, 2] == pb[:, 1])
        near: np.ndarray = valid & ((same == 2) | swapped)
        return near


def _near_parts(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    if b[0] < 0:
        return False
    same = (a[0] == b[0]) + (a[1] == b[1]) + (a[2] == b[2])
    return same == 2 or (a[0] == b[0] and a[1] == b[2] and a[2] == b[1])


@functools.lru_cache(maxsize=65_536)
def _date_parts(value: object) -> tuple[int, int, int]:
    pieces = str(value).split("-")
    if len(pieces) != 3 or not all(p.isdigit() for p in pieces):
        return (-1, -1, -1)
    return (int(pieces[0]), int(pieces[1]), int(pieces[2]))


# Distinct pairs from which rapidfuzz compares on every core: below, starting threads costs
# more than it saves.
_PARALLEL_PAIRS = 20_000
# Pairs of values are made distinct before comparing when there are at most this many times
# as many possible pairs of values as pairs to compare (so repeats are many).
_REPEATS = 4
_NEAR_NICKNAME = 0.92  # a typo of a name or nickname

_SCORERS: dict[str, Any] = {
    "jaro_winkler": distance.JaroWinkler.normalized_similarity,
    "first_name": distance.JaroWinkler.normalized_similarity,
    "ratio": distance.Indel.normalized_similarity,
}


def _initial_agrees(a: str, b: str) -> bool:
    return (len(a) == 1 or len(b) == 1) and a[0] == b[0]


@functools.lru_cache(maxsize=65_536)
def _nicknames_meet(a: str, b: str) -> bool:
    """Two first names are nicknames of one another (their forms meet), or one is a near
    spelling (a typo) of a name or nickname the other stands for (``jmaes`` and ``jimmy``,
    by ``james``); two plain spellings of one name are left to the similarity levels."""
    if first_name_forms(a) & first_name_forms(b):
        return True
    similar = distance.JaroWinkler.normalized_similarity
    return any(
        similar(x, y) >= _NEAR_NICKNAME
        for x in first_name_variants(a)
        for y in first_name_variants(b)
        if (x, y) != (a, b)
    )


@dataclass
class FellegiSunter:
    """m/u probabilities per comparison and level, and the prior share of matches."""

    comparisons: tuple[Comparison, ...]
    m: dict[str, list[float]] = field(default_factory=dict)
    u: dict[str, list[float]] = field(default_factory=dict)
    prior: float = 1e-4
    # Per term-frequency comparison: each value's share among the fitted records' values.
    tf: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for c in self.comparisons:
            n = c.levels
            # Starting m: matches mostly agree exactly; u: non-matches mostly disagree.
            self.m.setdefault(c.name, [0.05] + [0.1 / max(1, n - 2)] * (n - 2) + [0.85])
            self.u.setdefault(c.name, [0.9] + [0.09 / max(1, n - 2)] * (n - 2) + [0.01])

    def levels(
        self, left: Mapping[str, Sequence[str | None]], right: Mapping[str, Sequence[str | None]]
    ) -> np.ndarray:
        """A pairs x comparisons matrix of levels; ``left``/``right`` map columns to values."""
        columns = [c.compare(left[c.column], right[c.column]) for c in self.comparisons]
        return np.stack(columns, axis=1) if columns else np.zeros((0, 0), dtype=np.int8)

    def levels_one(
        self,
        record: Mapping[str, str | None],
        others: Mapping[str, Sequence[str | None] | np.ndarray],
    ) -> np.ndarray:
        """Like ``levels``, for one record against several."""
        columns = [c.compare_one(record.get(c.column), others[c.column]) for c in self.comparisons]
        return np.stack(columns, axis=1)

    def levels_coded(
        self, coded: Mapping[str, Coded], left: np.ndarray, right: np.ndarray
    ) -> np.ndarray:
        """Like ``levels``, for pairs of record positions into coded columns."""
        columns = [c.compare_coded(coded[c.column], left, right) for c in self.comparisons]
        return np.stack(columns, axis=1)

    def fit_tf(self, columns: Mapping[str, Sequence[str | None]]) -> None:
        """The term frequencies of the ``term_frequency`` comparisons' columns."""
        for c in self.comparisons:
            if c.term_frequency:
                values = pd.Series(list(columns[c.column]), dtype=object)
                shares = values[values.astype(bool)].value_counts(normalize=True)
                self.tf[c.name] = {str(k): float(v) for k, v in shares.items()}

    def tf_adjustment_coded(
        self, coded: Mapping[str, Coded], levels: np.ndarray, left: np.ndarray
    ) -> np.ndarray | None:
        """Extra weight of each pair for the value it agrees on exactly (see the module's
        doc); ``left`` is the first record of each pair of ``levels``. None: no
        term-frequency comparison."""
        total: np.ndarray | None = None
        for j, c in enumerate(self.comparisons):
            if not (c.term_frequency and c.name in self.tf):
                continue
            column = coded[c.column]
            table = self._tf_table(c, column.values)
            exact = levels[:, j] == c.levels - 1
            if total is None:
                total = np.zeros(len(levels))
            total[exact] += table[column.codes[left[exact]]]
        return total

    def tf_adjustment_one(
        self, record: Mapping[str, str | None], levels: np.ndarray
    ) -> np.ndarray | None:
        """Like ``tf_adjustment_coded``, for one record against several."""
        total: np.ndarray | None = None
        for j, c in enumerate(self.comparisons):
            if not (c.term_frequency and c.name in self.tf):
                continue
            value = record.get(c.column)
            if total is None:
                total = np.zeros(len(levels))
            if value:
                total[levels[:, j] == c.levels - 1] += self._tf_weight(c, str(value))
        return total

    def _tf_table(self, c: Comparison, values: np.ndarray) -> np.ndarray:
        return np.array([self._tf_weight(c, str(v)) for v in values], dtype=np.float64)

    def _tf_weight(self, c: Comparison, value: str) -> float:
        shares = self.tf[c.name]
        rarest = min(shares.values(), default=1.0)
        u_exact = self.u[c.name][c.levels - 1]
        return math.log2(u_exact / max(shares.get(value, rarest), _FLOOR))

    def weights(self, levels: np.ndarray, adjustment: np.ndarray | None = None) -> np.ndarray:
        """The match weight (log2 odds) of each pair of ``levels``, plus ``adjustment``
        (term frequencies) where given."""
        total = np.full(len(levels), math.log2(self.prior / (1 - self.prior)))
        if adjustment is not None:
            total += adjustment
        for j, c in enumerate(self.comparisons):
            table = self._weight_table(c)
            column = levels[:, j]
            present = column != MISSING
            total[present] += table[column[present]]
        return total

    def probabilities(self, levels: np.ndarray, adjustment: np.ndarray | None = None) -> np.ndarray:
        # 1 / (1 + 2**-w) stays finite for weights of any size (2**-w at most inf -> 0).
        with np.errstate(over="ignore"):
            inverse_odds: np.ndarray = np.exp2(-self.weights(levels, adjustment))
        return 1.0 / (1.0 + inverse_odds)

    def contributions(self, levels: np.ndarray) -> dict[str, float]:
        """Each comparison's weight for one pair (``levels`` of one row), for explanations."""
        out = {}
        for j, c in enumerate(self.comparisons):
            level = int(levels[j])
            if level != MISSING:
                out[c.name] = float(self._weight_table(c)[level])
        return out

    def _weight_table(self, c: Comparison) -> np.ndarray:
        """log2(m / u) of each level of ``c`` (0 for disagreement when ``agreement_only``)."""
        table: np.ndarray = np.log2(np.asarray(self.m[c.name]) / np.asarray(self.u[c.name]))
        if c.agreement_only:
            table[0] = 0.0
        return table

    def fit_u(self, levels: np.ndarray) -> None:
        """``u`` from the levels of random pairs (taken as non-matches)."""
        for j, c in enumerate(self.comparisons):
            self.u[c.name] = _distribution(levels[:, j], c.levels, None)

    def fit_u_exact(self, coded: Mapping[str, Coded], sides: np.ndarray | None = None) -> None:
        """``u`` of exact agreement computed from how often each value occurs, instead of
        counted among random pairs: the chance that two records (of the two sides, with
        ``sides``) hold one value, given both hold one. The other levels keep their shares
        of the rest. Exact, where a sample of random pairs sees a rare value's agreement a
        handful of times at most."""
        for c in self.comparisons:
            codes = coded[c.column].codes
            if sides is None:
                counts = np.bincount(codes[codes >= 0]).astype(np.float64)
                total = counts.sum()
                agree = (counts * (counts - 1)).sum() / max(total * (total - 1), 1.0)
            else:
                one, two = codes[sides == 0], codes[sides == 1]
                size = len(coded[c.column].values)
                p = np.bincount(one[one >= 0], minlength=size).astype(np.float64)
                q = np.bincount(two[two >= 0], minlength=size).astype(np.float64)
                agree = float(p @ q) / max(p.sum() * q.sum(), 1.0)
            u = np.asarray(self.u[c.name], dtype=np.float64)
            exact = max(float(agree), _FLOOR)
            rest = u[:-1] * (1 - exact) / max(float(u[:-1].sum()), _FLOOR)
            self.u[c.name] = [float(x) for x in np.append(np.clip(rest, _FLOOR, None), exact)]

    def fit_m(self, levels: np.ndarray) -> None:
        """``m`` from the levels of pairs known to match."""
        for j, c in enumerate(self.comparisons):
            self.m[c.name] = _distribution(levels[:, j], c.levels, None)

    def fit_em(
        self,
        levels: np.ndarray,
        exclude: frozenset[str] = frozenset(),
        iterations: int = 100,
        tolerance: float = 1e-6,
    ) -> int:
        """``m`` and the prior by EM over candidate pairs, ``u`` held; the iterations run.

        ``exclude`` names comparisons to leave out, as no evidence, with their ``m`` kept:
        those over the columns that chose the candidates (a blocking rule). Every candidate
        agrees there, matches and non-matches alike, so a ``u`` from random pairs would read
        that agreement as evidence, and EM would drift to "everything matches".

        The pairs are counted per pattern of levels first (pairs of one pattern have one
        probability), so each step works on the few distinct patterns, not on every pair.
        """
        used = [j for j, c in enumerate(self.comparisons) if c.name not in exclude]
        masked = levels.copy()
        masked[:, [j for j in range(levels.shape[1]) if j not in used]] = MISSING
        return self._em(masked, used, iterations, tolerance)

    def fit_prior(self, levels: np.ndarray, iterations: int = 100, tolerance: float = 1e-9) -> int:
        """The prior alone by EM over candidate pairs, ``m`` and ``u`` held."""
        return self._em(levels, [], iterations, tolerance)

    def _em(self, levels: np.ndarray, update: list[int], iterations: int, tolerance: float) -> int:
        """EM for the prior and the ``m`` of comparisons ``update``; the iterations run."""
        if len(levels) == 0:
            return 0
        patterns, counts = _patterns(levels)
        total = float(counts.sum())
        prior = min(max(self.prior, 0.01), 0.5)
        for step in range(1, iterations + 1):
            self.prior = prior
            p = self.probabilities(patterns)
            prior = float(np.clip((p * counts).sum() / total, _FLOOR, 1 - _FLOOR))
            change = abs(prior - self.prior)
            for j in update:
                c = self.comparisons[j]
                new_m = _distribution(patterns[:, j], c.levels, p * counts)
                change = max(change, _largest_change(new_m, self.m[c.name]))
                self.m[c.name] = new_m
            if change < tolerance:
                self.prior = prior
                return step
        self.prior = prior
        return iterations

    def to_json(self) -> str:
        return json.dumps(
            {
                "comparisons": [
                    {
                        "name": c.name,
                        "column": c.column,
                        "method": c.method,
                        "thresholds": list(c.thresholds),
                        "term_frequency": c.term_frequency,
                        "agreement_only": c.agreement_only,
                    }
                    for c in self.comparisons
                ],
                "m": self.m,
                "u": self.u,
                "prior": self.prior,
                "tf": self.tf,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> FellegiSunter:
        data = json.loads(text)
        comparisons = tuple(
            Comparison(
                c["name"],
                c["column"],
                c["method"],
                tuple(c["thresholds"]),
                c.get("term_frequency", False),
                c.get("agreement_only", False),
            )
            for c in data["comparisons"]
        )
        return cls(
            comparisons, m=data["m"], u=data["u"], prior=data["prior"], tf=data.get("tf", {})
        )


def _patterns(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``levels`` and how many times each occurs.

    Rows are packed into one integer each (a digit per comparison) where that fits, which is
    far quicker than numpy's row-wise ``unique``."""
    base = int(levels.max(initial=0)) + 2  # levels run from MISSING (-1) up
    if base ** levels.shape[1] >= 2**62:
        rows, counts = np.unique(levels, axis=0, return_counts=True)
        return rows, counts
    packed = (levels.astype(np.int64) + 1) @ (base ** np.arange(levels.shape[1], dtype=np.int64))
    _, first, counts = np.unique(packed, return_index=True, return_counts=True)
    return levels[first], counts


def _largest_change(new: list[float], old: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(new, old, strict=True))


def _distribution(column: np.ndarray, levels: int, weights: np.ndarray | None) -> list[float]:
    """The share of each level among present values, weighted, floored away from 0."""
    present = column != MISSING
    w = np.ones(len(column)) if weights is None else weights
    counts = np.bincount(column[present], weights=w[present], minlength=levels)[:levels]
    total = counts.sum()
    shares = counts / total if total > 0 else np.full(levels, 1.0 / levels)
    shares = np.clip(shares, _FLOOR, None)
    return [float(x) for x in shares / shares.sum()]
