"""Blocking: which pairs of records are worth scoring.

A ``BlockingRule`` names columns; two records are candidates under it when they hold the same
non-empty values in all of them. The candidates are the union over the rules. A block (records
sharing one key) larger than ``max_block`` is skipped: a key that common (a popular first name,
a big city's postcode) proposes mostly strangers, and pairs grow with its square.

``candidate_pairs`` finds the pairs of a whole set of records at once, with DuckDB;
``BlockingIndex`` keeps the blocks in memory and answers for one new record at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

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
    """Candidate pairs ``(i, j)``, ``i < j``, as an ``n x 2`` array of record positions.

    With ``sides`` (0 or 1 per record), only pairs across the two sides are proposed, for
    linking one data set to another; ``i`` is then the record of side 0.
    """
    n = len(next(iter(columns.values()))) if columns else 0
    side = np.zeros(n, dtype=np.int8) if sides is None else np.asarray(sides, dtype=np.int8)
    data = {"i": np.arange(n, dtype=np.int64), "side": side}
    data |= {f"k{r}": rule.keys(columns) for r, rule in enumerate(rules)}
    db = duckdb.connect()
    try:
        db.register("records", pa.table(data))
        across = "a.side = 0 AND b.side = 1" if sides is not None else "a.i < b.i"
        selects = [
            f"""SELECT a.i AS i, b.i AS j FROM records a JOIN records b ON a.k{r} = b.k{r}
            WHERE {across} AND a.k{r} IN (
                SELECT k{r} FROM records WHERE k{r} IS NOT NULL
                GROUP BY k{r} HAVING count(*) <= {int(max_block)})"""
            for r in range(len(rules))
        ]
        if not selects:
            return np.zeros((0, 2), dtype=np.int64)
        query = " UNION ".join(selects) + " ORDER BY i, j"
        pairs = db.sql(query).to_arrow_table()
    finally:
        db.close()
    return (
        np.stack([pairs["i"].to_numpy(), pairs["j"].to_numpy()], axis=1)
        if pairs.num_rows
        else np.zeros((0, 2), dtype=np.int64)
    )


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
