"""Blocking: which pairs of records are worth scoring.

A ``BlockingRule`` names columns; two records are candidates under it when they hold the same
non-empty values in all of them. The candidates are the union over the rules. A block (records
sharing one key) larger than ``max_block`` is skipped: a key that common (a popular first name,
a big city's postcode) proposes mostly strangers, and pairs grow with its square.

``candidate_pairs`` finds the pairs of a whole set of records at once (records sorted by block,
each block's pairs enumerated with numpy; the rules' pairs united as packed integers);
``BlockingIndex`` keeps the blocks in memory and answers for one new record at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

_SEPARATOR = "\x1f"
DEFAULT_MAX_BLOCK = 200


@dataclass(frozen=True)
class BlockingRule:
    columns: tuple[str, ...]

    def key(self, record: Mapping[str, str | None]) -> str | None:
        """The rule's key for one record, or None when a column is empty."""
        values = [record.get(c) for c in self.columns]
        if not all(values):
            return None
        return _SEPARATOR.join(v for v in values if v)

    def keys(self, columns: Mapping[str, Sequence[str | None]]) -> list[str | None]:
        """The rule's key for every record of ``columns`` (column -> values)."""
        parts = [columns[c] for c in self.columns]
        return [
            _SEPARATOR.join(values) if all(values) else None for values in zip(*parts, strict=True)
        ]


def candidate_pairs(
    columns: Mapping[str, Sequence[str | None]],
    rules: Sequence[BlockingRule],
    max_block: int = DEFAULT_MAX_BLOCK,
    sides: Sequence[int] | None = None,
) -> np.ndarray:
    """Candidate pairs ``(i, j)``, ``i < j``, as an ``n x 2`` array of record positions,
    sorted.

    With ``sides`` (0 or 1 per record), only pairs across the two sides are proposed, for
    linking one data set to another; ``i`` is then the record of side 0.
    """
    needed = {c for rule in rules for c in rule.columns}
    codes = {c: value_codes(columns[c]) for c in needed}
    n = len(next(iter(columns.values()))) if columns else 0
    keys = [rule_codes(rule, codes) for rule in rules]
    return pairs_of_blocks(keys, n, max_block, sides)


def value_codes(values: Sequence[str | None] | np.ndarray) -> np.ndarray:
    """Each value as an integer code (equal values, equal codes); -1 for None or empty."""
    codes, distinct = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    empty = np.flatnonzero(np.asarray(distinct, dtype=object) == "")
    if len(empty):
        codes[codes == empty[0]] = -1
    return codes.astype(np.int64, copy=False)


def rule_codes(rule: BlockingRule, codes: Mapping[str, np.ndarray]) -> np.ndarray:
    """Each record's block under ``rule`` as an integer (-1: a column is empty), from the
    ``value_codes`` of its columns."""
    key = np.asarray(codes[rule.columns[0]], dtype=np.int64)
    for column in rule.columns[1:]:
        other = np.asarray(codes[column], dtype=np.int64)
        missing = (key < 0) | (other < 0)
        combined = key * (int(other.max(initial=0)) + 1) + other
        combined[missing] = -1
        # Renumber, so that codes stay below the number of records however many columns.
        key = pd.factorize(combined, use_na_sentinel=False)[0].astype(np.int64)
        key[missing] = -1
    return key


def pairs_of_blocks(
    keys: Sequence[np.ndarray],
    n: int,
    max_block: int = DEFAULT_MAX_BLOCK,
    sides: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """The sorted union over rules of the pairs sharing a block (``rule_codes`` per rule,
    ``n`` records), blocks larger than ``max_block`` left out; see ``candidate_pairs``."""
    side = None if sides is None else np.asarray(sides, dtype=np.int8)
    found = [_block_pairs(key, max_block, side) for key in keys]
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    # One integer per pair; its sorted distinct values are the pairs sorted by (i, j). (A
    # sort and a comparison with the neighbour: quicker here than numpy's hashing unique.)
    packed = np.sort(np.concatenate(found))
    packed = packed[np.r_[True, packed[1:] != packed[:-1]]] if len(packed) else packed
    return np.stack([packed // max(n, 1), packed % max(n, 1)], axis=1)


def _block_pairs(key: np.ndarray, max_block: int, side: np.ndarray | None) -> np.ndarray:
    """Pairs of one rule, each packed as ``i * n + j``."""
    n = len(key)
    # By block, then (linking two sets) side, then position.
    order = np.argsort(key, kind="stable") if side is None else np.lexsort((side, key))
    order = order[key[order] >= 0]
    block = key[order]
    m = len(order)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])
    sizes = np.diff(np.r_[starts, m])
    size_of = np.repeat(sizes, sizes)
    end = np.repeat(starts + sizes, sizes)  # each position's block end
    at = np.arange(m)
    if side is None:
        low = at + 1  # the later records of the block
    else:
        # Side 0 records pair with the block's side 1 records, which follow them.
        first_side = np.repeat(starts, sizes)
        zeros = np.add.reduceat((side[order] == 0).astype(np.int64), starts)
        low = np.where(side[order] == 0, first_side + np.repeat(zeros, sizes), end)
    count = np.where(size_of <= max_block, end - low, 0)
    total = int(count.sum())
    left = np.repeat(at, count)
    offset = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    right = np.repeat(low, count) + offset
    i, j = order[left], order[right]
    packed: np.ndarray = i.astype(np.int64) * n + j
    return packed


class BlockingIndex:
    """The blocks of the records seen so far, for matching one new record at a time."""

    def __init__(self, rules: Sequence[BlockingRule], max_block: int = DEFAULT_MAX_BLOCK) -> None:
        self.rules = tuple(rules)
        self.max_block = max_block
        self._blocks: list[dict[str, list[int]]] = [{} for _ in self.rules]

    def candidates(self, record: Mapping[str, str | None]) -> list[int]:
        """Positions of indexed records sharing a (not oversized) block with ``record``."""
        found: set[int] = set()
        for rule, blocks in zip(self.rules, self._blocks, strict=True):
            key = rule.key(record)
            members = blocks.get(key) if key is not None else None
            if members and len(members) <= self.max_block:
                found.update(members)
        return sorted(found)

    def add(self, position: int, record: Mapping[str, str | None]) -> None:
        for rule, blocks in zip(self.rules, self._blocks, strict=True):
            key = rule.key(record)
            if key is not None:
                blocks.setdefault(key, []).append(position)
