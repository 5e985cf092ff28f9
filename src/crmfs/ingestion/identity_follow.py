"""Online features follow identity changes: merges combine states, splits recompute them.

The identity graph numbers its changes (``AuditEntry.seq``); the online store keeps the
last one it applied (``identity_mark``) in the same transaction as the states a change
rewrites, so each change is applied exactly once, also after a crash between the graph's
commit and the online store's.

- **Merge** (cluster ``B`` into ``A``): in every view keyed by golden ids, ``A``'s state
  becomes the merge of ``A``'s and ``B``'s partial aggregates (``merge_states``: tiles are
  combined, no event is replayed) and ``B``'s state is deleted.
- **Split** (``A`` into ``A``, ``C``, ...): the parts' states are recomputed from the event
  log with the mapping as it stood after the split (``Recompute``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from crmfs.identity.deterministic import ChangeKind
from crmfs.identity.graph import AuditEntry, IdentityGraph
from crmfs.runtimes.streaming.state import merged_blob
from crmfs.storage.ports import EntityKey, OnlineStore
from crmfs.transform.plan import ViewPlan

# (plan, golden ids, as of) -> each golden id's recomputed state; None: it has no events.
Recompute = Callable[[ViewPlan, Sequence[str], int], Mapping[str, bytes | None]]


class IdentityFollower:
    """Applies the graph's changes past the online store's identity mark."""

    def __init__(
        self,
        graph: IdentityGraph,
        online: OnlineStore,
        plans: Sequence[ViewPlan],
        recompute: Recompute,
    ) -> None:
        self.graph = graph
        self.online = online
        self.plans = [p for p in plans if p.view.entity.identity]
        self.recompute = recompute

    def follow(self) -> list[AuditEntry]:
        """Apply every pending change; the changes applied."""
        pending = self.graph.changes_after(self.online.identity_mark())
        if not pending:
            return []
        if not self.plans:  # nothing keyed by golden ids: only the mark moves
            self.online.apply_identity({}, pending[-1].seq)
            return pending
        updates: dict[str, dict[EntityKey, bytes | None]] = {p.table: {} for p in self.plans}
        for change in pending:
            for plan in self.plans:
                self._apply(plan, change, updates[plan.table])
        self.online.apply_identity(updates, pending[-1].seq)
        return pending

    def _apply(
        self, plan: ViewPlan, change: AuditEntry, written: dict[EntityKey, bytes | None]
    ) -> None:
        if change.kind is ChangeKind.MERGED:
            ids = [change.golden_id, *change.retired]
            merged = merged_blob(plan, self._current(plan, ids, written))
            if merged is not None:
                written[change.golden_id] = merged
            for retired in change.retired:
                written[retired] = None
        elif change.kind is ChangeKind.SPLIT:
            ids = [change.golden_id, *change.created]
            written.update(self.recompute(plan, ids, change.at_us))

    def _current(
        self, plan: ViewPlan, ids: list[str], written: Mapping[EntityKey, bytes | None]
    ) -> list[bytes | None]:
        """The states of ``ids``: as this round left them, else as stored."""
        stored = self.online.read(plan.table, [i for i in ids if i not in written])
        found = iter(stored)
        return [written[i] if i in written else next(found) for i in ids]
