"""Views rolled up by a relation follow it: when a person's parent changes, the parents'
states are recomputed.

A rolled-up view folds each new event under its person's parent **now** (``parent_of``,
from the last snapshot followed). When a relation event or an identity change gives a golden
id another parent, the states of the old and the new parent are rebuilt from the event log
with today's mapping, and the new snapshot is stored with them in one step, so a crash leaves
the old snapshot and the next follow finds the change again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import msgpack

from crmfs.definitions import Relation
from crmfs.storage.ports import EntityKey, OnlineStore
from crmfs.transform.plan import ViewPlan

SNAPSHOTS = "__relations"  # online table: relation name -> its golden id -> parent snapshot

# (plan, parent keys, each golden id's parent now) -> each parent's state rebuilt; None: no
# events.
RecomputeParents = Callable[
    [ViewPlan, Sequence[Any], Mapping[Any, Any]], Mapping[Any, bytes | None]
]


class RelationFollower:
    def __init__(
        self,
        relation: Relation,
        plans: Sequence[ViewPlan],
        online: OnlineStore,
        current: Callable[[], dict[Any, Any]],
        recompute: RecomputeParents,
    ) -> None:
        self.relation = relation
        self.plans = [p for p in plans if p.view.via == relation]
        self.online = online
        self.current = current
        self.recompute = recompute
        self._snapshot: dict[Any, Any] | None = None
        self.followed = False  # whether this process has compared the snapshot with the log

    def parent_of(self) -> dict[Any, Any]:
        """The snapshot the online states follow: golden id -> parent."""
        if self._snapshot is None:
            (blob,) = self.online.read(SNAPSHOTS, [self.relation.name])
            self._snapshot = (
                {} if blob is None else dict(msgpack.unpackb(blob, strict_map_key=False))
            )
        return self._snapshot

    def forget(self) -> None:
        """Read the snapshot again when next needed: another process (a stream worker)
        may have followed the relation since."""
        self._snapshot = None

    def follow(self, regrouped: Collection[Any] = ()) -> int:
        """Recompute the parents whose members changed: people whose parent changed, and
        ``regrouped`` golden ids (merged or split: their records changed); how many."""
        before = self.parent_of()
        now = self.current()
        moved = {g for g in before.keys() | now.keys() if before.get(g) != now.get(g)}
        changed = {
            parent
            for golden in moved.union(regrouped)
            for parent in (before.get(golden), now.get(golden))
            if parent is not None
        }
        self.followed = True
        if not changed:
            return 0
        keys = sorted(changed, key=str)
        updates: dict[str, dict[EntityKey, bytes | None]] = {}
        for plan in self.plans:
            updates[plan.table] = dict(self.recompute(plan, keys, now))
        updates[SNAPSHOTS] = {self.relation.name: msgpack.packb(now)}
        self.online.apply_identity(updates, self.online.identity_mark())
        self._snapshot = now
        return len(keys)
