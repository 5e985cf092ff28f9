"""The Fellegi-Sunter layer: agreement levels, m/u estimation, weights and explanations."""

from __future__ import annotations

import random

import numpy as np
import pytest

from crmfs.identity.probabilistic import MISSING, Comparison, FellegiSunter, _patterns

NAME = Comparison("first", "first", "jaro_winkler", (0.92, 0.8))


def test_levels_from_exact_down_to_disagreement() -> None:
    left = ["martha", "martha", "dwayne", "jones", None, "x"]
    right = ["martha", "marhta", "duane", "smith", "anne", None]
    assert NAME.levels == 4
    assert NAME.compare(left, right).tolist() == [3, 2, 1, 0, MISSING, MISSING]


def test_exact_ratio_and_date_comparisons() -> None:
    exact = Comparison("state", "state", "exact")
    assert exact.compare(["nsw", "nsw"], ["nsw", "vic"]).tolist() == [1, 0]
    ratio = Comparison("street", "street", "ratio", (0.8,))
    assert ratio.compare(["main street", "main street"], ["main stret", "high road"]).tolist() == [
        1,
        0,
    ]
    dob = Comparison("dob", "dob", "date")
    got = dob.compare(
        ["1956-09-09", "1956-09-09", "1956-09-08", "1956-09-09", "bad"],
        ["1956-09-09", "1965-09-09", "1956-08-09", "1957-10-09", "1956-09-09"],
    )
    assert got.tolist() == [2, 1, 1, 0, 0]  # exact, year typo, day/month swapped, two off


def _people(rng: random.Random, n: int) -> list[dict[str, str]]:
    firsts = ["anna", "bruno", "carla", "dmitri", "elena", "farid", "greta", "hiro", "ines"]
    lasts = ["smith", "novak", "garcia", "tanaka", "okafor", "muller", "rossi", "kowalski"]
    return [
        {
            "first": rng.choice(firsts),
            "last": rng.choice(lasts) + rng.choice(["", "son", "er", "ez", "i"]),
            "dob": f"19{rng.randint(40, 99)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        }
        for _ in range(n)
    ]


def _typo(rng: random.Random, value: str) -> str:
    if len(value) < 3 or rng.random() < 0.6:
        return value
    i = rng.randrange(len(value) - 1)
    return value[:i] + value[i + 1] + value[i] + value[i + 2 :]


def test_em_learns_to_tell_duplicates_from_strangers() -> None:
    """Records of 400 people, each also copied with typos; the model, fitted without labels
    (u from random pairs, m and the prior by EM over candidate pairs, leaving out the
    blocking column), scores the copies
    high and the strangers low."""
    rng = random.Random(3)
    people = _people(rng, 400)
    copies = [{k: _typo(rng, v) for k, v in p.items()} for p in people]
    comparisons = (
        NAME,
        Comparison("last", "last", "jaro_winkler", (0.92, 0.8)),
        Comparison("dob", "dob", "date"),
    )
    model = FellegiSunter(comparisons)

    def columns(rows: list[dict[str, str]], idx: list[int]) -> dict[str, list[str | None]]:
        return {c.column: [rows[i][c.column] for i in idx] for c in comparisons}

    n = len(people)
    random_left = [rng.randrange(n) for _ in range(5000)]
    random_right = [rng.randrange(n) for _ in range(5000)]
    model.fit_u(model.levels(columns(people, random_left), columns(copies, random_right)))
    # Candidates: every pair sharing a first name (a blocking rule), true pairs among them.
    pairs = [(i, j) for i in range(n) for j in range(n) if people[i]["first"] == copies[j]["first"]]
    levels = model.levels(
        columns(people, [i for i, _ in pairs]), columns(copies, [j for _, j in pairs])
    )
    steps = model.fit_em(levels, exclude=frozenset({"first"}))  # the blocking rule's column
    assert 1 <= steps <= 100
    p = model.probabilities(levels)
    truth = np.array([i == j for i, j in pairs])
    predicted = p >= 0.5
    true_positive = int((predicted & truth).sum())
    # A copy with typos in both its last name and date of birth is rarely recognisable.
    assert true_positive / int(truth.sum()) > 0.75  # recall
    assert true_positive / int(predicted.sum()) > 0.95  # precision
    assert model.m["dob"][2] > 0.5 > model.u["dob"][2]
    # The prior alone, m and u held, settles near the true share of matches.
    model.fit_prior(levels)
    assert 0.5 < model.prior / truth.mean() < 2.0


def test_missing_values_are_no_evidence_and_contributions_explain_the_weight() -> None:
    model = FellegiSunter((NAME, Comparison("dob", "dob", "date")))
    levels = np.array([[3, MISSING], [3, 2]], dtype=np.int8)
    weights = model.weights(levels)
    parts = model.contributions(levels[1])
    assert set(parts) == {"first", "dob"}
    assert weights[1] - weights[0] == pytest.approx(parts["dob"])
    assert set(model.contributions(levels[0])) == {"first"}
    assert 0.0 < model.probabilities(levels)[0] < model.probabilities(levels)[1] <= 1.0


def test_huge_weights_give_probabilities_not_nans() -> None:
    model = FellegiSunter(
        (NAME,), m={"first": [1e-6, 1e-6, 1e-6, 1.0]}, u={"first": [1.0, 1e-6, 1e-6, 1e-300]}
    )
    p = model.probabilities(np.array([[3], [0]], dtype=np.int8))
    assert p[0] == pytest.approx(1.0)
    assert p[1] == pytest.approx(0.0, abs=1e-6)


def test_the_model_round_trips_through_json() -> None:
    model = FellegiSunter((NAME, Comparison("state", "state", "exact")), prior=0.02)
    model.m["first"] = [0.1, 0.1, 0.2, 0.6]
    again = FellegiSunter.from_json(model.to_json())
    assert again.comparisons == model.comparisons
    assert again.m == model.m
    assert again.u == model.u
    assert again.prior == model.prior


def test_patterns_count_rows_whether_packed_or_not() -> None:
    rng = np.random.default_rng(4)
    narrow = rng.integers(-1, 3, size=(500, 4)).astype(np.int8)
    wide = np.concatenate([narrow] * 12, axis=1)  # 48 columns: too wide to pack
    for levels in (narrow, wide):
        rows, counts = _patterns(levels)
        assert counts.sum() == len(levels)
        expected = {}
        for row in map(tuple, levels.tolist()):
            expected[row] = expected.get(row, 0) + 1
        assert dict(zip(map(tuple, rows.tolist()), counts.tolist(), strict=True)) == expected


@pytest.mark.parametrize(
    "comparison",
    [
        NAME,
        Comparison("street", "street", "ratio", (0.9, 0.7)),
        Comparison("dob", "dob", "date"),
        Comparison("state", "state", "exact"),
    ],
    ids=lambda c: c.method,
)
def test_one_against_many_gives_what_pairs_give(comparison: Comparison) -> None:
    rng = random.Random(8)
    pool = ["anna", "anne", "ana", "", None, "1960-01-02", "1960-02-01", "1961-01-02", "bob"]
    for _ in range(50):
        value = rng.choice(pool)
        others = [rng.choice(pool) for _ in range(rng.randint(0, 12))]
        assert (
            comparison.compare_one(value, others).tolist()
            == comparison.compare([value] * len(others), others).tolist()
        )


def test_first_names_that_are_nicknames_of_one_another_have_their_own_level() -> None:
    first = Comparison("first", "first", "first_name", (0.92, 0.8))
    assert first.levels == 6
    others = ["robert", "bob", "rob", "zoe", "robrt", "rupert", "r", "z"]
    # exact 5, nicknames 4, near spellings 3 and 2, an initial 1, disagreement 0.
    levels = first.compare(["robert"] * len(others), others)
    assert levels.tolist() == [5, 4, 4, 0, 3, 2, 1, 0]
    # One record against many: the same levels.
    assert first.compare_one("robert", others).tolist() == levels.tolist()
    assert first.compare(["jimmy"], ["jmaes"]).tolist() == [4]  # James, typed with a slip


def test_term_frequencies_weigh_agreement_on_rare_values_more() -> None:
    last = Comparison("last", "last", "exact", term_frequency=True)
    model = FellegiSunter((last,))
    model.fit_tf({"last": ["smith"] * 8 + ["zylstra", "okafor"]})
    assert model.tf["last"]["smith"] == pytest.approx(0.8)
    levels = np.array([[1], [1]], dtype=np.int8)
    adjustment = model.tf_adjustment_one({"last": "smith"}, levels)
    rare = model.tf_adjustment_one({"last": "zylstra"}, levels)
    assert adjustment is not None
    assert rare is not None
    assert rare[0] > adjustment[0]
    p_common = model.probabilities(levels[:1], adjustment[:1])[0]
    p_rare = model.probabilities(levels[:1], rare[:1])[0]
    assert p_rare > p_common
    # Kept through JSON.
    again = FellegiSunter.from_json(model.to_json())
    assert again.tf == model.tf
    assert again.comparisons == model.comparisons


def test_m_from_known_matches() -> None:
    model = FellegiSunter((Comparison("city", "city", "exact"),))
    model.fit_m(np.array([[1], [1], [1], [0], [-1]], dtype=np.int8))
    assert model.m["city"] == pytest.approx([0.25, 0.75])


def test_dates_read_in_bulk_as_one_at_a_time() -> None:
    from crmfs.identity.probabilistic import Coded, _date_parts

    values = ["1956-09-09", "1956-9-09", "abcd-ef-gh", "2001-12-31", None, "", "x" * 10]
    values += ["１９５６-09-09", "-956-09-09", "0000-00-00", "19560909"]
    coded = Coded.of(values)
    assert coded.date_parts.tolist() == [list(_date_parts(v)) for v in coded.values]
    dob = Comparison("dob", "dob", "date")
    left, right = values, list(reversed(values))
    one = [dob.compare_one(a, [b])[0] for a, b in zip(left, right, strict=True)]
    assert dob.compare(left, right).tolist() == one


@pytest.mark.parametrize("distinct_values", [3, 400])
def test_coded_levels_with_and_without_distinct_value_pairs(distinct_values: int) -> None:
    # Few values: pairs of values are made distinct first; many: compared as they come.
    rng = random.Random(distinct_values)
    words = ["".join(rng.choices("abcdefgh", k=rng.randint(3, 9))) for _ in range(distinct_values)]
    left = [rng.choice(words) for _ in range(300)]
    right = [rng.choice([*words, None]) for _ in range(300)]
    for comparison in (NAME, Comparison("f", "f", "first_name", (0.9,))):
        expected = [comparison.compare_one(a, [b])[0] for a, b in zip(left, right, strict=True)]
        assert comparison.compare(left, right).tolist() == expected


def test_agreement_only_comparisons_weigh_nothing_when_they_differ() -> None:
    email = Comparison("email", "email", "exact", agreement_only=True)
    model = FellegiSunter((NAME, email), m={"email": [0.2, 0.8]}, u={"email": [0.99, 0.01]})
    levels = np.array([[3, 0], [3, 1], [3, MISSING]], dtype=np.int8)
    weights = model.weights(levels)
    assert weights[0] == pytest.approx(weights[2])  # differing = missing: no evidence
    assert weights[1] - weights[2] == pytest.approx(np.log2(0.8 / 0.01))
    assert model.contributions(levels[0])["email"] == 0.0
    again = FellegiSunter.from_json(model.to_json())
    assert again.comparisons == model.comparisons
