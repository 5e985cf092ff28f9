"""Probabilistic matching of records: blocking, a fitted Fellegi-Sunter model, a threshold.

``ProbabilisticMatcher.fit`` estimates the model on a set of records without labels;
``link`` then returns the matching pairs of a whole set (a first load, or two data sets);
``index`` + ``match`` compare one new record at a time with those seen before.
``fit_and_score`` and ``score`` give every candidate pair with its probability, below the
threshold too, for clustering (``crmfs.identity.clustering``), which needs to know which
pairs the model found unlikely.

Records are columns of normalized values (``crmfs.identity.normalize``), one list per
column, None where a value is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from crmfs.identity.blocking import (
    DEFAULT_MAX_BLOCK,
    BlockingIndex,
    BlockingRule,
    pairs_of_blocks,
    rule_codes,
)
from crmfs.identity.probabilistic import Coded, Comparison, FellegiSunter

Columns = Mapping[str, Sequence[str | None]]


@dataclass(frozen=True)
class MatchSettings:
    """What to compare, which pairs to consider, and from which probability a pair links."""

    comparisons: tuple[Comparison, ...]
    rules: tuple[BlockingRule, ...]
    threshold: float = 0.5
    max_block: int = DEFAULT_MAX_BLOCK
    # Random pairs for u of the levels below exact (exact agreement's u is counted).
    random_pairs: int = 20_000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {self.threshold}")
        if not self.comparisons:
            raise ValueError("at least one comparison is needed")
        if not self.rules:
            raise ValueError("at least one blocking rule is needed")


@dataclass(frozen=True)
class FitReport:
    candidate_pairs: int
    iterations: int
    prior: float


@dataclass(frozen=True)
class Matches:
    """Pairs of record positions ``(i, j)`` and their match probabilities."""

    pairs: np.ndarray
    probabilities: np.ndarray


@dataclass
class ProbabilisticMatcher:
    settings: MatchSettings
    model: FellegiSunter | None = None
    _columns: dict[str, np.ndarray] = field(default_factory=dict, init=False)  # object arrays
    _size: int = field(default=0, init=False)
    _index: BlockingIndex | None = field(default=None, init=False)

    def fit(
        self,
        columns: Columns,
        sides: Sequence[int] | None = None,
        known_matches: np.ndarray | None = None,
    ) -> FitReport:
        """Estimate the model from ``columns``: u from value counts and random pairs, then EM
        over the candidate pairs. With ``sides``, pairs are taken across two data sets only.

        ``known_matches`` (pairs of positions, ``n x 2``), when given, are pairs some other
        evidence already links, such as the deterministic layer's strong keys: ``m`` is then
        their share of each level instead of an EM estimate. Where people who are not one
        person often agree on several fields (colleagues, households), EM alone may take
        them for the matches; pairs linked by an email or a phone do not."""
        return self._fit(columns, sides, known_matches)[2]

    def fit_and_link(
        self,
        columns: Columns,
        sides: Sequence[int] | None = None,
        known_matches: np.ndarray | None = None,
    ) -> tuple[FitReport, Matches]:
        """``fit``, then ``link`` the same records, comparing each candidate pair once."""
        report, scored = self.fit_and_score(columns, sides, known_matches)
        return report, self._matches(scored.pairs, scored.probabilities)

    def fit_and_score(
        self,
        columns: Columns,
        sides: Sequence[int] | None = None,
        known_matches: np.ndarray | None = None,
    ) -> tuple[FitReport, Matches]:
        """``fit``, then every candidate pair of the same records with its probability."""
        pairs, levels, report, coded = self._fit(columns, sides, known_matches)
        model = self._fitted()
        adjustment = model.tf_adjustment_coded(coded, levels, pairs[:, 0])
        return report, Matches(pairs, model.probabilities(levels, adjustment))

    def _fit(
        self, columns: Columns, sides: Sequence[int] | None, known: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, FitReport, dict[str, Coded]]:
        """The candidate pairs, their levels, the report, and the coded columns."""
        model = FellegiSunter(self.settings.comparisons)
        n = _length(columns)
        rng = np.random.default_rng(self.settings.seed)
        if sides is None:
            left = rng.integers(0, n, self.settings.random_pairs)
            right = rng.integers(0, n, self.settings.random_pairs)
        else:
            side = np.asarray(sides)
            left = rng.choice(np.flatnonzero(side == 0), self.settings.random_pairs)
            right = rng.choice(np.flatnonzero(side == 1), self.settings.random_pairs)
        coded = self._coded(columns)
        model.fit_tf(columns)
        model.fit_u(model.levels_coded(coded, left, right))
        model.fit_u_exact(coded, None if sides is None else np.asarray(sides))
        keys = self._rule_keys(coded)
        pairs = pairs_of_blocks(keys, n, self.settings.max_block, sides)
        levels = model.levels_coded(coded, pairs[:, 0], pairs[:, 1])
        if known is not None and len(known):
            model.fit_m(model.levels_coded(coded, known[:, 0], known[:, 1]))
            model.fit_prior(levels)
            # EM gave the share of matches among the candidates; u (random pairs) reads
            # the weights as if among all pairs, so the prior is taken over all pairs too,
            # every match being among the candidates.
            everyone = n * (n - 1) / 2
            if sides is not None:
                on = np.asarray(sides)
                everyone = float(np.sum(on == 0)) * float(np.sum(on == 1))
            model.prior = max(model.prior * len(pairs) / max(everyone, 1.0), 1e-9)
            self.model = model
            return pairs, levels, FitReport(len(pairs), 0, model.prior), coded
        # m: EM over each rule's candidates without the rule's own columns, then averaged.
        start = {c.name: list(model.m[c.name]) for c in model.comparisons}
        estimates: dict[str, list[list[float]]] = {c.name: [] for c in model.comparisons}
        iterations = 0
        for rule, key in zip(self.settings.rules, keys, strict=True):
            chosen = self._chosen_by(key, pairs)
            if not chosen.any():
                continue
            blocked = frozenset(c.name for c in model.comparisons if c.column in rule.columns)
            model.m = {name: list(values) for name, values in start.items()}
            iterations += model.fit_em(levels[chosen], exclude=blocked)
            for c in model.comparisons:
                if c.name not in blocked:
                    estimates[c.name].append(model.m[c.name])
        model.m = {
            name: [float(x) for x in np.mean(found, axis=0)] if found else start[name]
            for name, found in estimates.items()
        }
        model.fit_prior(levels)
        self.model = model
        return pairs, levels, FitReport(len(pairs), iterations, model.prior), coded

    def _matches(self, pairs: np.ndarray, probabilities: np.ndarray) -> Matches:
        keep = probabilities >= self.settings.threshold
        return Matches(pairs[keep], probabilities[keep])

    def link(self, columns: Columns, sides: Sequence[int] | None = None) -> Matches:
        """The candidate pairs of ``columns`` at or above the threshold."""
        model = self._fitted()
        coded = self._coded(columns)
        pairs = pairs_of_blocks(
            self._rule_keys(coded), _length(columns), self.settings.max_block, sides
        )
        levels = model.levels_coded(coded, pairs[:, 0], pairs[:, 1])
        adjustment = model.tf_adjustment_coded(coded, levels, pairs[:, 0])
        return self._matches(pairs, model.probabilities(levels, adjustment))

    def index(self, columns: Columns) -> None:
        """Remember ``columns`` (records 0..n-1) for ``match``."""
        self._size = _length(columns)
        self._columns = {
            name: np.asarray(list(values) + [None] * max(16, self._size), dtype=object)
            for name, values in columns.items()
        }
        self._index = BlockingIndex(self.settings.rules, self.settings.max_block)
        for position in range(_length(columns)):
            self._index.add(position, {name: values[position] for name, values in columns.items()})

    def match(self, record: Mapping[str, str | None]) -> list[tuple[int, float]]:
        """Records seen before that ``record`` matches, best first, as (position,
        probability); ``record`` is then remembered as the next position."""
        return [
            (i, q)
            for i, q in sorted(self.score(record), key=lambda item: -item[1])
            if q >= self.settings.threshold
        ]

    def score(self, record: Mapping[str, str | None]) -> list[tuple[int, float]]:
        """Every candidate seen before for ``record`` with its probability, by position;
        ``record`` is then remembered as the next position."""
        model = self._fitted()
        if self._index is None:
            self.index({name: [] for name in self._needed()})
        assert self._index is not None
        found: list[tuple[int, float]] = []
        candidates = self._index.candidates(record)
        if candidates:
            at = np.asarray(candidates, dtype=np.int64)
            others = {c: self._columns[c][at] for c in self._needed()}
            levels = model.levels_one(record, others)
            p = model.probabilities(levels, model.tf_adjustment_one(record, levels))
            found = [(i, float(q)) for i, q in zip(candidates, p, strict=True)]
        position = self._size
        for name, values in self._columns.items():
            if position == len(values):  # full: double the room
                values = np.concatenate([values, np.full(len(values), None, dtype=object)])
                self._columns[name] = values
            values[position] = record.get(name)
        self._size += 1
        self._index.add(position, record)
        return found

    def explain(
        self, left: Mapping[str, str | None], right: Mapping[str, str | None]
    ) -> dict[str, float]:
        """Each comparison's contribution (log2 of m/u) to the pair's match weight."""
        model = self._fitted()
        levels = model.levels(
            {c: [left.get(c)] for c in self._needed()}, {c: [right.get(c)] for c in self._needed()}
        )
        return model.contributions(levels[0])

    def _fitted(self) -> FellegiSunter:
        if self.model is None:
            raise RuntimeError("the matcher has no model yet: call fit() first")
        return self.model

    def _needed(self) -> list[str]:
        names = [c.column for c in self.settings.comparisons]
        names += [col for rule in self.settings.rules for col in rule.columns]
        return list(dict.fromkeys(names))

    def _coded(self, columns: Columns) -> dict[str, Coded]:
        """Each column compared or blocked on, coded once for all the pairs of one call."""
        return {name: Coded.of(columns[name]) for name in self._needed()}

    def _rule_keys(self, coded: Mapping[str, Coded]) -> list[np.ndarray]:
        codes = {name: c.codes for name, c in coded.items()}
        return [rule_codes(rule, codes) for rule in self.settings.rules]

    def _chosen_by(self, key: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """Which of ``pairs`` (all candidates) the rule of block ``key`` alone proposes."""
        sizes = np.bincount(key[key >= 0], minlength=int(key.max(initial=0)) + 1)
        usable = (key >= 0) & (sizes[np.maximum(key, 0)] <= self.settings.max_block)
        left, right = pairs[:, 0], pairs[:, 1]
        chosen: np.ndarray = usable[left] & (key[left] == key[right])
        return chosen


def _length(columns: Columns) -> int:
    return len(next(iter(columns.values()))) if columns else 0
