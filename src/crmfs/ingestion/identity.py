"""The identity step between validation and aggregation.

Events carry their entity key today; the identity service (golden ids) plugs in here by
implementing ``IdentityStep`` and rewriting or adding key columns before the log append.
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

from crmfs.definitions import EventSource


class IdentityStep(Protocol):
    def resolve(self, source: EventSource, events: pa.Table) -> pa.Table:
        """The validated events with their entity keys resolved."""
        ...


class KeysAsGiven:
    """Use the entity keys events carry, unchanged."""

    def resolve(self, source: EventSource, events: pa.Table) -> pa.Table:
        return events
