"""Keys that come from mappings, not from the log: golden ids and relation parents.

``MappedKeys`` is what the store uses for views keyed by golden ids (``Entity(identity=
True)``) and views rolled up by a ``Relation``:

- the mappings the batch runtime reads events by, on each time axis (``mapping``);
- the parent key columns added to events before the streaming fold (``key_columns``);
- following identity and relation changes in the online states after each batch (``follow``):
  merges combine states, splits and parent changes recompute them from the log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from crmfs.definitions import GOLDEN_ID, IDENTITY_RECORD, Catalog, FeatureView, Relation
from crmfs.identity.deterministic import ChangeKind
from crmfs.identity.graph import IdentityGraph, IntervalAxis
from crmfs.identity.graph_schema import UNBOUNDED_FUTURE, UNBOUNDED_PAST
from crmfs.identity.hierarchy import (
    RelationEvent,
    parent_spans,
    rolled_up,
    spans_by_record,
)
from crmfs.ingestion.identity_follow import IdentityFollower
from crmfs.ingestion.relation_follow import RelationFollower
from crmfs.runtimes.batch.port import BatchEngine
from crmfs.runtimes.streaming.state import merged_blob
from crmfs.storage.arrow_schema import ARROW_TYPES
from crmfs.storage.event_log import EVENT_TIME, INGESTED_AT, SEQ, EventLog
from crmfs.storage.ports import OnlineStore
from crmfs.transform.plan import ViewPlan, plan_view

RelationRow = tuple[str, int, int, int, Any]  # record, event time, seq, ingested at, parent
MEMBERS = "__members"  # suffix of the view name behind a rolled-up view's member states


def member_plan(plan: ViewPlan) -> ViewPlan:
    """The plan of a rolled-up view's member states: the same features keyed by the
    relation's child (golden ids), in a table of their own."""
    view = plan.view
    assert view.via is not None
    members = FeatureView(
        f"{view.name}{MEMBERS}",
        entity=view.via.child,
        source=view.source,
        features=view.features,
        filter=view.filter,
        ttl=view.ttl,
    )
    return plan_view(members, plan.version)


class MappedKeys:
    def __init__(
        self,
        catalog: Catalog,
        graph: IdentityGraph,
        log: EventLog,
        engine: BatchEngine,
        online: OnlineStore,
        plans: Sequence[ViewPlan],
    ) -> None:
        self.catalog = catalog
        self.graph = graph
        self.log = log
        self.engine = engine
        self.online = online
        self.plans = list(plans)
        # Each rolled-up view keeps its members' states too (keyed by golden id): a parent's
        # state is the merge of its members', so a move recomputes it without the log.
        self.member_plans = {
            p.view.name: member_plan(p) for p in self.plans if p.view.via is not None
        }
        every = [*self.plans, *self.member_plans.values()]
        self._identity = IdentityFollower(graph, online, every, self._recompute_golden)
        self._relations = {
            name: RelationFollower(
                relation,
                self.plans,
                online,
                lambda r=relation: self._current_parents(r),  # type: ignore[misc]
                self._recompute_parents,
            )
            for name, relation in catalog.relations.items()
        }
        self._relation_cache: dict[str, tuple[int, list[RelationRow]]] = {}

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
        parent_type = ARROW_TYPES[relation.parent.dtype]
        if axis == "current":  # one span per record: read off the linker, no sweep
            parents = self._current_parents(relation)
            records: list[str] = []
            keys: list[Any] = []
            for golden, members in self.graph.clusters().items():
                parent = parents.get(golden)
                if parent is not None:
                    records += members
                    keys += [parent] * len(members)
            return pa.table(
                {
                    "record_id": pa.array(records, pa.string()),
                    "golden_id": pa.array(keys, parent_type),
                    "from_us": pa.array([UNBOUNDED_PAST] * len(records), pa.int64()),
                    "to_us": pa.array([UNBOUNDED_FUTURE] * len(records), pa.int64()),
                }
            )
        records_spans = spans_by_record(self.graph.intervals(axis))
        parents_spans = parent_spans(records_spans, self._relation_events(relation, axis))
        return rolled_up(records_spans, parents_spans, parent_type)

    def _relation_rows(self, relation: Relation) -> tuple[bool, list[RelationRow]]:
        """The relation source's events (record, event time, seq, ingested, parent), read
        from the log once and then only what was appended; whether any were new."""
        last, rows = self._relation_cache.get(relation.name, (0, []))
        table = self.log.read(relation.source.name, after_seq=last)
        if table is None or not table.num_rows or IDENTITY_RECORD not in table.column_names:
            return False, rows
        names = (IDENTITY_RECORD, EVENT_TIME, SEQ, INGESTED_AT, relation.parent_field)
        columns = [table.column(name).to_pylist() for name in names]
        rows = rows + list(zip(*columns, strict=True))
        self._relation_cache[relation.name] = (max(columns[2]), rows)
        return True, rows

    def _relation_events(self, relation: Relation, axis: IntervalAxis) -> list[RelationEvent]:
        events = []
        for record, event_us, seq, ingested, parent in self._relation_rows(relation)[1]:
            if axis == "effective":
                available = event_us
            elif axis == "recorded":
                available = max(event_us, ingested)
            else:
                available = UNBOUNDED_PAST
            events.append(RelationEvent(record, available, event_us, seq, parent))
        return events

    def _current_parents(self, relation: Relation) -> dict[Any, Any]:
        """Each golden id's parent now: its records' latest relation event."""
        best: dict[str, tuple[int, int, Any]] = {}
        for record, event_us, seq, _, parent in self._relation_rows(relation)[1]:
            golden = self.graph.golden_id(record)
            if golden is None:
                continue
            found = best.get(golden)
            if found is None or (event_us, seq) > found[:2]:
                best[golden] = (event_us, seq, parent)
        return {g: p for g, (_, _, p) in best.items() if p is not None}

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

    def forget_cached(self) -> None:
        """Drop what this process keeps of state that other processes change (the relation
        snapshots, read from the online store again when next needed)."""
        for follower in self._relations.values():
            follower.forget()

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
            relation = follower.relation
            if source is not None and source != relation.source.name and not regrouped:
                continue
            arrived, _ = self._relation_rows(relation)
            if arrived or regrouped or not follower.followed:
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
        self, plan: ViewPlan, keys: Sequence[Any], parent_of: Mapping[Any, Any]
    ) -> dict[Any, bytes | None]:
        """Each parent's state: the merge of its members' states now."""
        members: dict[Any, list[str]] = {key: [] for key in keys}
        for golden, parent in parent_of.items():
            if parent in members:
                members[parent].append(golden)
        table = self.member_plans[plan.view.name].table
        return {
            key: merged_blob(plan, self.online.read(table, sorted(golden_ids)))
            for key, golden_ids in members.items()
        }

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
