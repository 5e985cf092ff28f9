"""Shared plumbing for the generator: seeded random streams, the time window, id columns."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]

TS_TYPE = pa.timestamp("us", tz="UTC")
US_PER_SECOND = 1_000_000
US_PER_MINUTE = 60 * US_PER_SECOND
US_PER_HOUR = 60 * US_PER_MINUTE
US_PER_DAY = 24 * US_PER_HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent generator for one part of the data set.

    Each table draws from its own stream keyed by (seed, name) rather than sharing one generator,
    so changing how one table is generated does not shift the random numbers of every other
    table. crc32 is used instead of ``hash()`` because string hashing is salted per process.
    """
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def py_random(rng: np.random.Generator) -> random.Random:
    """A :class:`random.Random` seeded from ``rng``, for scalar-heavy Python loops.

    Scalar draws from numpy generators cost about a microsecond each; ``random.Random`` is several
    times faster for the per-record string noise.
    """
    return random.Random(int(rng.integers(0, 2**63)))


@dataclass(frozen=True)
class Window:
    """The time span covered by the extract: [start_us, end_us] in microseconds since epoch."""

    start_us: int
    end_us: int

    @classmethod
    def ending(cls, end: datetime, days: int) -> Window:
        """The ``days`` long window that ends at ``end`` (which must be timezone-aware)."""
        if end.tzinfo is None or end.utcoffset() is None:
            raise ValueError("end must be timezone-aware (e.g. datetime(2026, 1, 1, tzinfo=UTC))")
        # Integer arithmetic on timedeltas: float ``timestamp()`` would lose microseconds.
        end_us = (end - _EPOCH) // timedelta(microseconds=1)
        return cls(start_us=end_us - days * US_PER_DAY, end_us=end_us)

    @property
    def span_us(self) -> int:
        """Length of the window in microseconds."""
        return self.end_us - self.start_us

    def uniform(self, rng: np.random.Generator, n: int) -> I64:
        """``n`` uniform times in [start_us, end_us)."""
        return rng.integers(self.start_us, self.end_us, size=n, dtype=np.int64)


def timestamps(values: I64) -> pa.Array:
    """Microseconds since epoch as a ``timestamp[us, tz=UTC]`` array."""
    return pa.array(values, pa.int64()).cast(TS_TYPE)


def padded_ids(prefix: str, numbers: I64, width: int) -> pa.Array:
    """``prefix`` + zero-padded ``numbers`` as strings, e.g. ("SFC-", 123, 6) -> "SFC-000123".

    Built with Arrow kernels: formatting a million ids with f-strings would take most of a second.
    """
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def shuffled_ids(rng: np.random.Generator, prefix: str, n: int, width: int = 6) -> list[str]:
    """``n`` distinct ids numbered in random order, so an id reveals nothing about row order."""
    numbers = rng.permutation(n) + 1
    width = max(width, len(str(n)))
    return [f"{prefix}{int(k):0{width}d}" for k in numbers]


def event_ids(rng: np.random.Generator, prefix: str, n: int) -> tuple[pa.Array, I64]:
    """``n`` distinct event ids (as strings, and their numeric part for tie-breaking sorts)."""
    numbers = rng.permutation(n).astype(np.int64) + 1
    return padded_ids(prefix, numbers, max(9, len(str(n)))), numbers


def segment_offsets(counts: I64) -> I64:
    """Start offset of each segment when segments of length ``counts`` are laid end to end."""
    offsets = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=offsets[1:])
    return offsets
