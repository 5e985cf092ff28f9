"""Blocking and the probabilistic matcher: batch and one-at-a-time agree."""

from __future__ import annotations

import random

import numpy as np
import pytest

from crmfs.identity.blocking import BlockingIndex, BlockingRule, candidate_pairs
from crmfs.identity.matcher import MatchSettings, ProbabilisticMatcher
from crmfs.identity.probabilistic import Comparison

FIRST, LAST, DOB = BlockingRule(("first",)), BlockingRule(("last",)), BlockingRule(("dob",))


def test_candidate_pairs_share_a_block_key() -> None:
    columns = {
        "first": ["ann", "ann", "bob", None, "ann"],
        "last": ["lee", "kim", "lee", "lee", None],
    }
    pairs = candidate_pairs(columns, [FIRST, LAST])
    assert pairs.tolist() == [[0, 1], [0, 2], [0, 3], [0, 4], [1, 4], [2, 3]]
    # A missing value is in no block; a block over the limit proposes nothing.
    assert candidate_pairs(columns, [FIRST], max_block=2).tolist() == []
    # Linking two data sets: only pairs across them, the first side first.
    across = candidate_pairs(columns, [FIRST, LAST], sides=[0, 1, 1, 0, 1])
    assert across.tolist() == [[0, 1], [0, 2], [0, 4], [3, 2]]
    assert candidate_pairs(columns, []).shape == (0, 2)


def test_rules_over_several_columns_need_them_all() -> None:
    rule = BlockingRule(("first", "last"))
    assert rule.key({"first": "ann", "last": "lee"}) == "ann\x1flee"
    assert rule.key({"first": "ann", "last": None}) is None
    assert rule.key({"first": "ann"}) is None


def test_the_index_proposes_what_the_batch_pairs_hold() -> None:
    rng = random.Random(5)
    records = [
        {"first": rng.choice("abcde"), "last": rng.choice(["x", "y", None])} for _ in range(60)
    ]
    columns = {name: [r[name] for r in records] for name in ("first", "last")}
    expected = {tuple(p) for p in candidate_pairs(columns, [FIRST, LAST]).tolist()}
    index = BlockingIndex([FIRST, LAST], max_block=1000)
    found = set()
    for j, record in enumerate(records):
        found.update((i, j) for i in index.candidates(record))
        index.add(j, record)
    assert found == expected


COMPARISONS = (
    Comparison("first", "first", "jaro_winkler", (0.92, 0.8)),
    Comparison("last", "last", "jaro_winkler", (0.92, 0.8)),
    Comparison("dob", "dob", "date"),
    Comparison("city", "city", "exact"),
)


def _records(seed: int) -> tuple[dict[str, list[str | None]], list[int]]:
    """People and noisy second records of most of them: columns and each record's person."""
    rng = random.Random(seed)
    firsts = ["anna", "bruno", "carla", "dmitri", "elena", "farid", "greta", "hiro", "ines"]
    lasts = ["smith", "novak", "garcia", "tanaka", "okafor", "muller", "rossi", "kowalski"]
    cities = ["lyon", "kyoto", "lagos", "porto", "tartu"]
    people = [
        {
            "first": rng.choice(firsts),
            "last": rng.choice(lasts) + rng.choice(["", "son", "ez", "i", "ova"]),
            "dob": f"19{rng.randint(40, 99)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "city": rng.choice(cities),
        }
        for _ in range(300)
    ]
    rows, owner = [], []
    for i, p in enumerate(people):
        rows.append(dict(p))
        owner.append(i)
        if rng.random() < 0.7:
            copy: dict[str, str | None] = dict(p)
            field = rng.choice(["first", "last", "dob", "city"])
            value = copy[field] or ""
            if field == "city":
                copy[field] = None
            elif field == "dob":  # a mistyped digit of the day
                copy[field] = value[:-1] + str((int(value[-1]) + 1) % 10)
            else:
                copy[field] = value[:-1] + "q"
            rows.append(copy)
            owner.append(i)
    order = list(range(len(rows)))
    rng.shuffle(order)
    columns = {name: [rows[k][name] for k in order] for name in ("first", "last", "dob", "city")}
    return columns, [owner[k] for k in order]


def test_the_matcher_finds_second_records_without_labels() -> None:
    columns, owner = _records(11)
    matcher = ProbabilisticMatcher(MatchSettings(COMPARISONS, (FIRST, LAST, DOB)))
    report = matcher.fit(columns)
    assert report.candidate_pairs > 0
    assert 0 < report.prior < 0.5
    matches = matcher.link(columns)
    _, at_once = ProbabilisticMatcher(matcher.settings).fit_and_link(columns)
    assert np.array_equal(at_once.pairs, matches.pairs)
    assert np.array_equal(at_once.probabilities, matches.probabilities)
    truth = {
        (i, j) for i in range(len(owner)) for j in range(i + 1, len(owner)) if owner[i] == owner[j]
    }
    found = {tuple(p) for p in matches.pairs.tolist()}
    assert len(found & truth) / len(truth) > 0.95
    assert len(found & truth) / len(found) > 0.95
    assert (matches.probabilities >= 0.5).all()


def test_one_at_a_time_matches_what_the_batch_links() -> None:
    columns, _ = _records(12)
    settings = MatchSettings(COMPARISONS, (FIRST, LAST, DOB), max_block=10_000)
    matcher = ProbabilisticMatcher(settings)
    matcher.fit(columns)
    batch = {tuple(p) for p in matcher.link(columns).pairs.tolist()}
    stream = ProbabilisticMatcher(settings, model=matcher.model)
    stream.index({name: [] for name in columns})
    incremental = set()
    n = len(columns["first"])
    for j in range(n):
        record = {name: values[j] for name, values in columns.items()}
        found = stream.match(record)
        assert [p for _, p in found] == sorted((p for _, p in found), reverse=True)
        incremental.update((i, j) for i, _ in found)
    assert incremental == batch


def test_explanations_and_guard_rails() -> None:
    matcher = ProbabilisticMatcher(MatchSettings(COMPARISONS, (FIRST, LAST, DOB)))
    with pytest.raises(RuntimeError, match="fit"):
        matcher.link({"first": ["a"], "last": ["b"], "dob": [None], "city": [None]})
    columns, _ = _records(13)
    matcher.fit(columns)
    parts = matcher.explain(
        {"first": "anna", "last": "smith", "dob": "1960-01-02", "city": None},
        {"first": "anna", "last": "smiht", "dob": "1960-02-01", "city": "lyon"},
    )
    assert set(parts) == {"first", "last", "dob"}  # a missing city is no evidence
    # Swapped day and month, and a near surname, speak for a match.
    assert parts["dob"] > 0
    assert parts["last"] > 0
    with pytest.raises(ValueError, match="threshold"):
        MatchSettings(COMPARISONS, (FIRST,), threshold=1.0)
    with pytest.raises(ValueError, match="blocking rule"):
        MatchSettings(COMPARISONS, ())
    assert np.isfinite(matcher.model.prior if matcher.model else np.nan)


TF_COMPARISONS = (
    Comparison("first", "first", "first_name", (0.92, 0.8), term_frequency=True),
    Comparison("last", "last", "jaro_winkler", (0.92, 0.8), term_frequency=True),
    Comparison("dob", "dob", "date"),
    Comparison("city", "city", "exact", term_frequency=True),
)


def test_scores_of_every_candidate_batch_and_one_at_a_time() -> None:
    columns, owner = _records(14)
    settings = MatchSettings(TF_COMPARISONS, (FIRST, LAST, DOB), max_block=10_000)
    matcher = ProbabilisticMatcher(settings)
    _, scored = matcher.fit_and_score(columns)
    _, linked = ProbabilisticMatcher(settings).fit_and_link(columns)
    assert (scored.probabilities < 0.5).any()  # below the threshold too
    keep = scored.probabilities >= 0.5
    assert np.array_equal(scored.pairs[keep], linked.pairs)
    batch = {
        (int(i), int(j)): float(p)
        for (i, j), p in zip(scored.pairs.tolist(), scored.probabilities, strict=True)
    }
    # One at a time with the same model (term frequencies included): the same scores.
    stream = ProbabilisticMatcher(settings, model=matcher.model)
    streamed = {}
    for j in range(len(owner)):
        record = {name: values[j] for name, values in columns.items()}
        streamed.update({(i, j): p for i, p in stream.score(record)})
    assert streamed.keys() == batch.keys()
    assert all(streamed[k] == pytest.approx(batch[k]) for k in batch)


def test_m_from_pairs_known_to_match() -> None:
    columns, owner = _records(15)
    known = np.array(
        [
            (i, j)
            for i in range(len(owner))
            for j in range(i + 1, len(owner))
            if owner[i] == owner[j] and i % 3 == 0
        ],
        dtype=np.int64,
    )
    matcher = ProbabilisticMatcher(MatchSettings(TF_COMPARISONS, (FIRST, LAST, DOB)))
    report = matcher.fit(columns, known_matches=known)
    assert report.iterations == 0
    assert matcher.model is not None
    # Known matches mostly agree exactly on first names; the prior is over all pairs.
    assert matcher.model.m["first"][-1] > 0.6
    n = len(owner)
    assert matcher.model.prior < 2 * len(owner) / (n * (n - 1) / 2)
    _, found = matcher.fit_and_link(columns, known_matches=known)
    truth = {
        (i, j) for i in range(len(owner)) for j in range(i + 1, len(owner)) if owner[i] == owner[j]
    }
    pairs = {tuple(p) for p in found.pairs.tolist()}
    assert len(pairs & truth) / len(truth) > 0.9
    assert len(pairs & truth) / len(pairs) > 0.9
