"""What the store, training sets, parity checks and identity followers ask of a batch engine.

Both engines answer it: :class:`~crmfs.runtimes.batch.engine.DuckDBEngine` (embedded) and
:class:`~crmfs.runtimes.batch.spark_engine.SparkEngine` (``crmfs[spark]``), from the same
plan's SQL, with equal values.
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

from crmfs.runtimes.batch.engine import PitStrategy
from crmfs.transform.plan import ViewPlan


class BatchEngine(Protocol):
    """Point-in-time features for entity rows, and online states rebuilt from the log."""

    def point_in_time(
        self,
        plan: ViewPlan,
        entity_rows: pa.Table,
        as_served: bool,
        strategy: PitStrategy = "auto",
        identity: pa.Table | None = None,
    ) -> pa.Table:
        """Columns ``plan.output_names`` for ``entity_rows(__row, __key, __t)``, in row order."""
        ...

    def backfill(
        self,
        plan: ViewPlan,
        start_us: int,
        end_us: int,
        now: int,
        upto_seq: int,
        identity: pa.Table | None = None,
    ) -> pa.Table:
        """``key`` and ``state`` (the streaming runtime's msgpack document) per entity."""
        ...
