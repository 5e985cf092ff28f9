"""Entity rows that name people by an identifier (an email, a phone, a CRM id ...) instead
of a golden id get the golden id it stands for: now, for online reads, or as of each row's
time, for training sets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from crmfs.definitions import EventSource, FeatureView, IdentifierKind
from crmfs.errors import ConfigError
from crmfs.identity.graph import IdentityGraph
from crmfs.identity.lookup import IdentifierLookup, identifier_kind


class EntityRows:
    def __init__(self, graph: IdentityGraph, region: str, sources: Sequence[EventSource]) -> None:
        self.lookup = IdentifierLookup(graph, region)
        self.sources = list(sources)

    def golden_ids_now(self, view: FeatureView, rows: list[dict[str, Any]]) -> None:
        """Rows without the view's join key get their golden id now (None: it names no
        one), in place."""
        join_key = view.entity.join_key
        for row in rows:
            if join_key in row:
                continue
            name, kind = self.identifier_column(view, list(row))
            row[join_key] = self.lookup.golden_ids_now(kind, [row[name]])[0]

    def with_golden_ids(
        self,
        table: pa.Table,
        views: Sequence[FeatureView],
        times: list[int],
        mapping: pa.Table,
    ) -> pa.Table:
        """``table`` with each identity view's join key added where it lacks it: the golden
        id each row's identifier stood for at its time (``times``, UTC microseconds) on
        ``mapping``'s time axis."""
        for view in views:
            join_key = view.entity.join_key
            if not view.entity.identity or join_key in table.column_names:
                continue
            name, kind = self.identifier_column(view, table.column_names)
            golden = self.lookup.golden_ids_at(kind, table.column(name).to_pylist(), times, mapping)
            table = table.append_column(join_key, pa.array(golden, pa.string()))
        return table

    def identifier_column(
        self, view: FeatureView, columns: Sequence[str]
    ) -> tuple[str, IdentifierKind]:
        """The first column that holds a strong identifier, and its kind."""
        for name in columns:
            kind = identifier_kind(name, self.sources)
            if kind is not None and kind.is_strong:
                return name, kind
        raise ConfigError(
            f"feature view {view.name!r} needs {view.entity.join_key!r} (a golden"
            " id) or a strong identifier (email, phone, crm_contact_id ..., or a source's"
            " identifier field) in each entity row"
        )
