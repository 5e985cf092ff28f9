"""Blocking in bulk: the numpy pairs equal a plain reference over every pair of records."""

from __future__ import annotations

from itertools import combinations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from crmfs.identity.blocking import BlockingRule, candidate_pairs, rule_codes, value_codes

RULES = (BlockingRule(("a",)), BlockingRule(("b",)), BlockingRule(("a", "b")))
values = st.sampled_from(["x", "y", "z", "", None])
records = st.lists(st.tuples(values, values, st.integers(0, 1)), max_size=40)


def reference(
    rows: list[tuple[str | None, str | None, int]],
    rules: tuple[BlockingRule, ...],
    max_block: int,
    across: bool,
) -> list[list[int]]:
    """Every pair sharing a block that is not larger than ``max_block``, by brute force."""
    found = set()
    for rule in rules:
        keys = [rule.key({"a": a, "b": b}) for a, b, _ in rows]
        for i, j in combinations(range(len(rows)), 2):
            if keys[i] is None or keys[i] != keys[j] or keys.count(keys[i]) > max_block:
                continue
            if not across:
                found.add((i, j))
            elif rows[i][2] != rows[j][2]:
                found.add((i, j) if rows[i][2] == 0 else (j, i))
    return sorted([i, j] for i, j in found)


@settings(max_examples=150, deadline=None)
@given(records, st.integers(1, 6), st.booleans())
def test_candidate_pairs_equal_the_reference(
    rows: list[tuple[str | None, str | None, int]], max_block: int, across: bool
) -> None:
    columns = {"a": [r[0] for r in rows], "b": [r[1] for r in rows]}
    sides = [r[2] for r in rows] if across else None
    got = candidate_pairs(columns, RULES, max_block, sides)
    assert got.shape[1] == 2
    assert got.tolist() == reference(rows, RULES, max_block, across)


def test_codes_of_values_and_of_rules_over_several_columns() -> None:
    codes = {
        "a": value_codes(["x", "x", "", None, "y"]),
        "b": value_codes(["p", "q", "p", "p", "p"]),
    }
    assert codes["a"].tolist()[:4] == [0, 0, -1, -1]
    assert codes["a"][4] not in (-1, 0)
    both = rule_codes(BlockingRule(("a", "b")), codes)
    assert both[0] != both[1]  # same a, different b
    assert both[2] == both[3] == -1  # an empty column: no block
    assert len({int(both[0]), int(both[1]), int(both[4])}) == 3
    assert rule_codes(BlockingRule(("a",)), codes).tolist() == codes["a"].tolist()
    assert np.issubdtype(both.dtype, np.integer)
