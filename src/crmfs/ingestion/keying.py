"""Keys that come from mappings, not from the log: golden ids and relation parents.

``MappedKeys`` is what the store uses for views keyed by golden ids (``Entity(identity=
True)``) and views rolled up by a ``Relation``:

- the mappings the batch runtime reads events by, on each time axis (``mapping``);
- the parent key columns added to events before the streaming fold (``key_columns``);
- following identity and relation changes in the online states after each batch (``follow``):
  merges combine states, splits and parent changes recompute them from the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from crmfs.definitions import GOLDEN_ID, IDENTITY_RECORD, Catalog, Relation
from crmfs.identity.deterministic import ChangeKind
from crmfs.identity.graph import UNBOUNDED_FUTURE, UNBOUNDED_PAST, IdentityGraph, IntervalAxis
from crmfs.identity.hierarchy import (
    RelationEvent,
    current_parents,
    parent_spans,
    rolled_up,
    spans_by_record,
)
from crmfs.ingestion.identity_follow import IdentityFollower
from crmfs.ingestion.relation_follow import RelationFollower
from crmfs.runtimes.batch.engine import DuckDBEngine
from crmfs.storage.arrow_schema import ARROW_TYPES
from crmfs.storage.event_log import EVENT_TIME, INGESTED_AT, SEQ, EventLog
from crmfs.storage.ports import OnlineStore
from crmfs.transform.plan import ViewPlan


class MappedKeys:
    def __init__(
        self,
        catalog: Catalog,
        graph: IdentityGraph,
        log: EventLog,
        engine: DuckDBEngine,
        online: OnlineStore,
        plans: Sequence[ViewPlan],
    ) -> None:
        self.catalog = catalog
        self.graph = graph
        self.log = log
        self.engine = engine
        self.online = online
        self.plans = list(plans)
        self._identity = IdentityFollower(graph, online, self.plans, self._recompute_golden)
        self._relations = {
            name: RelationFollower(
                relation,
                self.plans,
                online,
                lambda r=relation: self._current_parents(r),  # type: ignore[misc]
                lambda plan, keys, r=relation: self._recompute_parents(r, plan, keys),  # type: ignore[misc]
            )
            for name, relation in catalog.relations.items()
        }

    # -- mappings for the batch runtime ----------------------------------------------------

    def mapping(self, plan: ViewPlan, axis: IntervalAxis) -> pa.Table | None:
        """The intervals the view's events are keyed by on ``axis``; None for views keyed
        by a field of the log."""
        if plan.view.via is not None:
            return self.relation_mapping(plan.view.via, axis)
        if plan.view.entity.identity:
            return self.graph.intervals(axis)
        return None

    def relation_mapping(self, relation: Relation, axis: IntervalAxis) -> pa.Table:
        records = spans_by_record(self.graph.intervals(axis))
        parents = parent_spans(records, self._relation_events(relation, axis))
        return rolled_up(records, parents, ARROW_TYPES[relation.parent.dtype])

    def _relation_events(self, relation: Relation, axis: IntervalAxis) -> list[RelationEvent]:
        table = self.log.read(relation.source.name)
        if table is None or IDENTITY_RECORD not in table.column_names:
            return []
        columns = [
            table.column(name).to_pylist()
            for name in (IDENTITY_RECORD, EVENT_TIME, SEQ, INGESTED_AT, relation.parent_field)
        ]
        events = []
        for record, event_us, seq, ingested, parent in zip(*columns, strict=True):
            if axis == "effective":
                available = event_us
            elif axis == "recorded":
                available = max(event_us, ingested)
            else:
                available = UNBOUNDED_PAST
            events.append(RelationEvent(record, available, event_us, seq, parent))
        return events

    def _current_parents(self, relation: Relation) -> dict[Any, Any]:
        records = spans_by_record(self.graph.intervals("current"))
        return current_parents(parent_spans(records, self._relation_events(relation, "current")))

    # -- streaming ---------------------------------------------------------------------------

    def key_columns(self, source: str, events: pa.Table) -> pa.Table:
        """``events`` with the parent key column of each relation its views roll up by."""
        for follower in self._relations.values():
            relation = follower.relation
            if relation.key_column in events.column_names or not any(
                p.view.source.name == source for p in follower.plans
            ):
                continue
            parent_of = follower.parent_of()
            golden = (
                events.column(GOLDEN_ID).to_pylist()
                if GOLDEN_ID in events.column_names
                else [None] * events.num_rows
            )
            parents = [parent_of.get(g) for g in golden]
            events = events.append_column(
                relation.key_column, pa.array(parents, ARROW_TYPES[relation.parent.dtype])
            )
        return events

    def follow(self, source: str | None = None) -> int:
        """Follow identity changes, then relation changes (all of them, or those a batch of
        ``source`` may have made); how many changes were followed."""
        applied = self._identity.follow()
        regrouped = {
            golden
            for change in applied
            if change.kind in (ChangeKind.MERGED, ChangeKind.SPLIT)
            for golden in (change.golden_id, *change.retired, *change.created)
        }
        changed = len(applied)
        for follower in self._relations.values():
            if source is None or regrouped or source == follower.relation.source.name:
                changed += follower.follow(regrouped)
        return changed

    # -- recomputing from the log --------------------------------------------------------------

    def _recompute_golden(
        self, plan: ViewPlan, golden_ids: Sequence[str], at: int
    ) -> dict[Any, bytes | None]:
        """The states of ``golden_ids`` rebuilt from the log, with the mapping as of ``at``."""
        mapping = self.graph.intervals("current", at)
        return self._rebuilt(plan, golden_ids, mapping)

    def _recompute_parents(
        self, relation: Relation, plan: ViewPlan, keys: Sequence[Any]
    ) -> dict[Any, bytes | None]:
        return self._rebuilt(plan, keys, self.relation_mapping(relation, "current"))

    def _rebuilt(
        self, plan: ViewPlan, keys: Sequence[Any], mapping: pa.Table
    ) -> dict[Any, bytes | None]:
        wanted = pa.array(list(keys), mapping.schema.field("golden_id").type)
        mapping = mapping.filter(pc.is_in(mapping["golden_id"], wanted))
        mark = self.online.watermark()
        now = max(mark.ingested_at, self.log.last_ingested_at())
        table = self.engine.backfill(plan, UNBOUNDED_PAST, UNBOUNDED_FUTURE, now, mark.seq, mapping)
        states: dict[Any, bytes | None] = dict.fromkeys(keys)
        states.update(zip(table["key"].to_pylist(), table["state"].to_pylist(), strict=True))
        return states
