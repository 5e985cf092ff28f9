"""Online reads, the use case behind ``FeatureStore.get_online_features``: a selection
compiled once, entity rows keyed (golden ids resolved now), the read through the store or
its cache, and the freshness contract (fallbacks, maximum age, consent)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from crmfs.definitions import Catalog, FeatureService
from crmfs.errors import EntityDataError, FeatureNotFound
from crmfs.identity.entity_rows import EntityRows
from crmfs.serving.contract import enforce
from crmfs.serving.online import OnlineResponse, ViewReader, read_online
from crmfs.serving.selection import CompiledSelection, compile_selection
from crmfs.storage.ports import EntityKey, OnlineStore
from crmfs.timestamps import MICROS_PER_SECOND
from crmfs.transform.plan import ViewPlan

if TYPE_CHECKING:
    from crmfs.serving.cache import CachedReads

FeatureSelection = Sequence[str] | str | FeatureService
# (entity columns by join key, time (UTC micros), refs) -> each ref's values, from the log
OfflineRead = Callable[[dict[str, list[Any]], int, Sequence[str]], dict[str, list[object]]]
_MAX_COMPILED = 256  # feature selections whose compiled requests are kept


class OnlineReads:
    def __init__(
        self,
        online: OnlineStore,
        catalog: Catalog,
        plans: Callable[[], Mapping[str, ViewPlan]],
        entity_rows: Callable[[], EntityRows],
        offline: OfflineRead,
        last_logged_at: Callable[[], int],
    ) -> None:
        self.online = online
        self.reader: ViewReader = online  # or a cache in front of it
        self.catalog = catalog
        self._plans = plans
        self._entity_rows = entity_rows
        self._offline = offline
        self._last_logged_at = last_logged_at
        self._compiled: dict[str | tuple[str, ...], CompiledSelection] = {}

    def read(
        self,
        features: FeatureSelection,
        entity_rows: Sequence[Mapping[str, Any]],
        at: int,
        max_age_s: float | None,
        offline_fallback: bool,
    ) -> OnlineResponse:
        rows = [dict(row) for row in entity_rows]
        selection = self.selection(features)
        requests, keys, labels = [], [], []
        for request, refs in selection.requests:
            plan = request.plan
            join_key = plan.view.entity.join_key
            if plan.view.entity.identity and any(join_key not in row for row in rows):
                self._entity_rows().golden_ids_now(plan.view, rows)
            try:
                as_key = key_type(plan)
                keys.append([as_key(row[join_key]) for row in rows])
            except KeyError:
                raise EntityDataError(
                    f"entity row lacks {join_key!r}, needed by feature view {plan.view.name!r}"
                ) from None
            except (TypeError, ValueError):
                raise EntityDataError(
                    f"entity row's {join_key!r} is not a {plan.view.entity.dtype} key"
                ) from None
            requests.append(request)
            labels.append(refs)
        response = read_online(self.reader, requests, keys, rows, labels, at)
        offline = partial(self._offline_values, rows, at) if offline_fallback else None
        enforce(response, selection.contract, max_age_s, offline, partial(self._log_age_s, at))
        if selection.hidden:
            response.drop(selection.hidden)
        return response

    def refs_of(self, features: FeatureSelection) -> tuple[list[str], FeatureService | None]:
        """The references of a selection, and the service it names (if any)."""
        if isinstance(features, FeatureService):
            return features.feature_refs(), features
        if isinstance(features, str):
            service = self.catalog.services.get(features)
            if service is None:
                raise FeatureNotFound(features, sorted(self.catalog.services))
            return service.feature_refs(), service
        return list(features), None

    def selection(self, features: FeatureSelection) -> CompiledSelection:
        """The compiled requests of a selection, kept for the next call with the same one."""
        key = None if isinstance(features, FeatureService) else features
        if not isinstance(key, str) and key is not None:
            key = tuple(key)
        compiled = self._compiled.get(key) if key is not None else None
        if compiled is None:
            refs, service = self.refs_of(features)
            compiled = compile_selection(self.catalog, self._plans(), refs, service)
            if key is not None:
                if len(self._compiled) >= _MAX_COMPILED:
                    self._compiled.clear()
                self._compiled[key] = compiled
        return compiled

    def forget(self) -> None:
        """Definitions were applied: compile selections again."""
        self._compiled.clear()

    def use_cache(self, max_entries: int, ttl_s: float) -> CachedReads:
        from crmfs.serving.cache import CachedReads

        cache = CachedReads(self.online, max_entries=max_entries, ttl_s=ttl_s)
        self.reader = cache
        return cache

    def stop_cache(self) -> None:
        """Read the online store directly again (the cache's owner closes it)."""
        self.reader = self.online

    def wrote(self) -> None:
        """This process changed the online store: its read cache, if any, forgets what it
        held at once (other processes' caches hear of it from the store's change feed)."""
        invalidate = getattr(self.reader, "invalidate", None)
        if invalidate is not None:
            invalidate(None)

    def _offline_values(
        self, rows: list[dict[str, Any]], at: int, refs: Sequence[str], positions: Sequence[int]
    ) -> dict[str, list[object]]:
        """``refs`` at time ``at`` for the rows at ``positions``, from the event log; keys
        typed as the online read typed them."""
        columns: dict[str, list[Any]] = {}
        plans = self._plans()
        for ref in refs:
            plan = plans[self.catalog.resolve(ref)[0].name]
            join_key = plan.view.entity.join_key
            if join_key not in columns:
                as_key = key_type(plan)
                values = [rows[i][join_key] for i in positions]
                columns[join_key] = [None if v is None else as_key(v) for v in values]
        return self._offline(columns, at, refs)

    def _log_age_s(self, at: int) -> float:
        """How old the newest logged event is (the age of an offline value)."""
        return max(0, at - self._last_logged_at()) / MICROS_PER_SECOND


def key_type(plan: ViewPlan) -> Callable[[Any], EntityKey]:
    return int if plan.view.entity.dtype.value == "int" else str
