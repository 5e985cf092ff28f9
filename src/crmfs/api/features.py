"""``POST /v1/features``: checks, the read, masking, and the JSON answer."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Request
from starlette.responses import Response

from crmfs.api.gate import Gate
from crmfs.api.metrics import CacheCounters, served_entities, served_values
from crmfs.api.models import EntityValue, FeaturesRequest
from crmfs.api.settings import AUTO, ServerSettings
from crmfs.config import RedisOnlineStoreConfig
from crmfs.errors import EntityDataError
from crmfs.serving.access import MASKED, Principal
from crmfs.serving.online import OnlineResponse
from crmfs.store import FeatureStore

if TYPE_CHECKING:
    from crmfs.api.app import StoreAccess

_COUNTERS_EVERY_S = 1.0


class FeatureReads:
    def __init__(
        self, store: FeatureStore, gate: Gate, settings: ServerSettings, access: StoreAccess
    ) -> None:
        self.store = store
        self.gate = gate
        self.settings = settings
        self.access = access
        self.cache = (
            store.use_read_cache(settings.cache.max_entries, settings.cache.ttl_s)
            if _cache_wanted(settings, store)
            else None
        )
        self._counters = CacheCounters(self._cache_counts) if self.cache is not None else None
        self._counted_at = 0.0

    async def serve(
        self, body: FeaturesRequest, request: Request, principal: Principal
    ) -> Response:
        selection: str | list[str] = (
            body.feature_service if body.features is None else body.features
        )
        compiled = self.store.online_selection(selection)  # compiled once, then kept
        masked = self.gate.masked_features(
            request, principal, body.feature_service, compiled.labels
        )
        rows = _rows(body.entities, self.settings.max_entities)
        store = self.store
        response = await self.access.run(
            lambda: store.get_online_features(selection, rows, max_age_s=body.max_age_s),
            slow=compiled.contract.reads_offline,
        )
        if masked:
            _mask(response, masked)
            self.gate.record_masked(request, principal, masked, compiled.labels, len(rows))
        served_entities(body.feature_service or "features").inc(len(rows))
        _count_statuses(response)
        self._update_counters()
        return Response(orjson.dumps(_body(response)), media_type="application/json")

    def catalog_summary(self) -> dict[str, Any]:
        catalog = self.store.catalog
        return {
            "services": {
                name: {
                    "features": service.feature_refs(),
                    "purpose": service.purpose,
                    "consent": service.consent,
                }
                for name, service in sorted(catalog.services.items())
            },
            "views": {
                name: {
                    "entity": view.entity.name,
                    "join_key": view.entity.join_key,
                    "features": view.feature_names,
                    "freshness_sla_s": view.sla_seconds,
                }
                for name, view in sorted(catalog.views.items())
            },
        }

    def clear_cache(self) -> bool:
        if self.cache is None:
            return False
        self.cache.invalidate(None)
        return True

    def update_cache_counters(self) -> None:
        if self._counters is not None:
            self._counters.update()

    def _update_counters(self) -> None:
        now = time.monotonic()
        if self._counters is not None and now - self._counted_at >= _COUNTERS_EVERY_S:
            self._counted_at = now
            self._counters.update()

    def _cache_counts(self) -> tuple[int, int]:
        assert self.cache is not None
        return self.cache.hits, self.cache.misses

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.store.reads.stop_cache()  # the store may outlive the server


def _cache_wanted(settings: ServerSettings, store: FeatureStore) -> bool:
    if settings.cache.enabled == AUTO:
        return isinstance(store.config.online_store, RedisOnlineStoreConfig)
    return bool(settings.cache.enabled)


def _rows(
    entities: list[dict[str, EntityValue]] | dict[str, list[EntityValue]], limit: int
) -> list[dict[str, Any]]:
    if isinstance(entities, dict):
        lengths = {len(values) for values in entities.values()}
        if len(lengths) > 1:
            raise EntityDataError("entities: every column must have the same number of values")
        count = lengths.pop() if lengths else 0
        rows: list[dict[str, Any]] = [
            {key: values[i] for key, values in entities.items()} for i in range(count)
        ]
    else:
        rows = list(entities)
    if not rows:
        raise EntityDataError("entities: give at least one entity row")
    if len(rows) > limit:
        raise EntityDataError(f"entities: {len(rows)} rows is over this server's limit of {limit}")
    return rows


def _mask(response: OnlineResponse, masked: Sequence[str]) -> None:
    n = len(response.entity_rows)
    for ref in masked:
        if ref in response.values:
            response.values[ref] = [None] * n
            response.statuses[ref] = [MASKED] * n
            response.ages[ref] = [None] * n
            response.fallbacks.pop(ref, None)


def _count_statuses(response: OnlineResponse) -> None:
    for status, count in Counter(chain.from_iterable(response.statuses.values())).items():
        served_values(status).inc(count)


def _body(response: OnlineResponse) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for ref in response.features:
        column: dict[str, Any] = {
            "values": response.values[ref],
            "statuses": response.statuses[ref],
            "ages_s": response.ages[ref],
        }
        if ref in response.fallbacks:
            column["fallbacks"] = response.fallbacks[ref]
        features[ref] = column
    return {"entities": response.entity_rows, "features": features}
