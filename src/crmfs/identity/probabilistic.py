"""The probabilistic layer: a Fellegi-Sunter model over field comparisons.

Each ``Comparison`` turns a pair of records into an agreement level for one field: ``0`` for
disagreement, higher for closer agreement (the exact value is the highest), or "no evidence"
when either side is missing. The model holds, per comparison and level, ``m`` (how often true
matches show that level) and ``u`` (how often non-matches do); a pair's match weight is
``log2(lambda / (1 - lambda)) + sum(log2(m / u))`` over its comparisons, and its match
probability ``1 / (1 + 2**-weight)``.

``u`` is first estimated from random pairs (nearly all of them non-matches); then ``m``, ``u``
and ``lambda`` (the share of matches among candidate pairs) by expectation maximisation over
the candidate pairs that blocking proposes, starting from there. Similarities are computed in
bulk, a pair per element, by rapidfuzz.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from rapidfuzz import distance, fuzz, process

Method = Literal["exact", "jaro_winkler", "ratio", "date"]
MISSING = -1
_FLOOR = 1e-6  # no probability is taken as exactly 0 or 1


@dataclass(frozen=True)
class Comparison:
    """Agreement levels of one field.

    ``thresholds`` are similarity cut-offs in decreasing order (0..1): level ``len + 1`` is
    an exact match, level ``len - i`` a similarity at or above ``thresholds[i]``, level 0
    anything else. ``date`` compares ``YYYY-MM-DD`` strings: exact, or one of day, month
    and year differing (a typo) or day and month swapped, else disagreement.
    """

    name: str
    column: str
    method: Method = "jaro_winkler"
    thresholds: tuple[float, ...] = ()

    @property
    def levels(self) -> int:
        if self.method == "date":
            return 3
        return len(self.thresholds) + 2

    def compare(self, left: Sequence[str | None], right: Sequence[str | None]) -> np.ndarray:
        """The level of each pair ``(left[i], right[i])``, ``MISSING`` where a side is."""
        out = np.full(len(left), MISSING, dtype=np.int8)
        both = [(i, x, y) for i, (x, y) in enumerate(zip(left, right, strict=True)) if x and y]
        if not both:
            return out
        idx = np.fromiter((i for i, _, _ in both), dtype=np.int64, count=len(both))
        a = [x for _, x, _ in both]
        b = [y for _, _, y in both]
        exact = np.fromiter((x == y for x, y in zip(a, b, strict=True)), bool, len(both))
        top = self.levels - 1
        if self.method == "exact":
            out[idx] = np.where(exact, top, 0)
        elif self.method == "date":
            near = np.fromiter(map(_near_date, a, b), bool, len(both))
            out[idx] = np.where(exact, top, np.where(near, 1, 0))
        else:
            similarity = process.cpdist(a, b, scorer=_SCORERS[self.method], workers=1)
            level = np.zeros(len(both), dtype=np.int8)
            for i, cut in enumerate(self.thresholds):
                found = (level == 0) & (similarity >= cut)
                level[found] = len(self.thresholds) - i
            out[idx] = np.where(exact, top, level)
        return out


def _ratio(a: str, b: str, **_: Any) -> float:
    return float(fuzz.ratio(a, b)) / 100.0


_SCORERS: dict[str, Any] = {
    "jaro_winkler": distance.JaroWinkler.normalized_similarity,
    "ratio": _ratio,
}


def _near_date(a: str, b: str) -> bool:
    """One of year, month, day differs, or day and month are swapped."""
    pa, pb = a.split("-"), b.split("-")
    if len(pa) != 3 or len(pb) != 3:
        return False
    same = sum(x == y for x, y in zip(pa, pb, strict=True))
    swapped = pa[0] == pb[0] and pa[1] == pb[2] and pa[2] == pb[1]
    return same == 2 or swapped


@dataclass
class FellegiSunter:
    """m/u probabilities per comparison and level, and the prior share of matches."""

    comparisons: tuple[Comparison, ...]
    m: dict[str, list[float]] = field(default_factory=dict)
    u: dict[str, list[float]] = field(default_factory=dict)
    prior: float = 1e-4

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

    def weights(self, levels: np.ndarray) -> np.ndarray:
        """The match weight (log2 odds) of each pair of ``levels``."""
        total = np.full(len(levels), math.log2(self.prior / (1 - self.prior)))
        for j, c in enumerate(self.comparisons):
            table = np.log2(np.asarray(self.m[c.name]) / np.asarray(self.u[c.name]))
            column = levels[:, j]
            present = column != MISSING
            total[present] += table[column[present]]
        return total

    def probabilities(self, levels: np.ndarray) -> np.ndarray:
        # 1 / (1 + 2**-w) stays finite for weights of any size (2**-w at most inf -> 0).
        with np.errstate(over="ignore"):
            inverse_odds: np.ndarray = np.exp2(-self.weights(levels))
        return 1.0 / (1.0 + inverse_odds)

    def contributions(self, levels: np.ndarray) -> dict[str, float]:
        """Each comparison's weight for one pair (``levels`` of one row), for explanations."""
        out = {}
        for j, c in enumerate(self.comparisons):
            level = int(levels[j])
            if level != MISSING:
                out[c.name] = math.log2(self.m[c.name][level] / self.u[c.name][level])
        return out

    def fit_u(self, levels: np.ndarray) -> None:
        """``u`` from the levels of random pairs (taken as non-matches)."""
        for j, c in enumerate(self.comparisons):
            self.u[c.name] = _distribution(levels[:, j], c.levels, None)

    def fit_em(self, levels: np.ndarray, iterations: int = 100, tolerance: float = 1e-6) -> int:
        """``m``, ``u`` and the prior by EM over candidate pairs; the iterations run.

        ``u`` starts from ``fit_u`` (random pairs) but is estimated again among the
        candidates: blocking makes the candidates agree on some fields far more often than
        random pairs do, and a ``u`` from random pairs would count that agreement, shared by
        matches and non-matches alike, as evidence of a match.
        """
        prior = min(max(self.prior, 0.01), 0.5)
        for step in range(1, iterations + 1):
            self.prior = prior
            p = self.probabilities(levels)
            prior = float(np.clip(p.mean(), _FLOOR, 1 - _FLOOR))
            change = abs(prior - self.prior)
            for j, c in enumerate(self.comparisons):
                new_m = _distribution(levels[:, j], c.levels, p)
                new_u = _distribution(levels[:, j], c.levels, 1.0 - p)
                change = max(change, _largest_change(new_m, self.m[c.name]))
                change = max(change, _largest_change(new_u, self.u[c.name]))
                self.m[c.name], self.u[c.name] = new_m, new_u
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
                    }
                    for c in self.comparisons
                ],
                "m": self.m,
                "u": self.u,
                "prior": self.prior,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> FellegiSunter:
        data = json.loads(text)
        comparisons = tuple(
            Comparison(c["name"], c["column"], c["method"], tuple(c["thresholds"]))
            for c in data["comparisons"]
        )
        return cls(comparisons, m=data["m"], u=data["u"], prior=data["prior"])


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
