"""Prometheus metrics of the feature server.

With several worker processes (``crmfs serve --workers N``), ``PROMETHEUS_MULTIPROC_DIR``
is set by ``crmfs serve`` and ``/metrics`` adds up every worker's values.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache, lru_cache

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)

REQUESTS = Counter(
    "crmfs_http_requests", "HTTP requests by endpoint and status", ["endpoint", "status"]
)
LATENCY = Histogram(
    "crmfs_http_request_seconds", "Request latency by endpoint", ["endpoint"], buckets=_BUCKETS
)
ENTITIES = Counter("crmfs_served_entities", "Entity rows served", ["selection"])
VALUE_STATUS = Counter(
    "crmfs_served_values", "Served values by status (fresh, stale, fallback ...)", ["status"]
)
ACCESS = Counter(
    "crmfs_access_decisions",
    "Refused or masked requests (unauthenticated, forbidden, masked)",
    ["decision"],
)
CACHE_HITS = Counter("crmfs_cache_hits", "Entity states served from the in-process cache")
CACHE_MISSES = Counter("crmfs_cache_misses", "Entity states read from the online store")
CACHE_HIT_RATIO = Gauge(
    "crmfs_cache_hit_ratio",
    "Hits over all cache lookups since the worker started",
    multiprocess_mode="liveall",
)
INGESTED = Counter("crmfs_http_ingested_events", "Events accepted through HTTP", ["source"])
QUARANTINED = Counter(
    "crmfs_http_quarantined_events", "Events quarantined through HTTP", ["source"]
)


# A labelled child is looked up by its label values on every ``labels`` call; the hot path
# keeps the children it has used instead (label values are few: endpoints, statuses).
@cache
def request_latency(endpoint: str) -> Histogram:
    return LATENCY.labels(endpoint)


@cache
def requests_done(endpoint: str, status: int) -> Counter:
    return REQUESTS.labels(endpoint, str(status))


@cache
def served_values(status: str) -> Counter:
    return VALUE_STATUS.labels(status)


@lru_cache(maxsize=1024)  # by feature service name: bounded, as clients choose them
def served_entities(selection: str) -> Counter:
    return ENTITIES.labels(selection)


class CacheCounters:
    """Moves a cache's cumulative hit and miss counts into the counters."""

    def __init__(self, read: Callable[[], tuple[int, int]]) -> None:
        self._read = read
        self._hits = self._misses = 0

    def update(self) -> None:
        hits, misses = self._read()
        if hits > self._hits:
            CACHE_HITS.inc(hits - self._hits)
        if misses > self._misses:
            CACHE_MISSES.inc(misses - self._misses)
        self._hits, self._misses = hits, misses
        if hits + misses:
            CACHE_HIT_RATIO.set(hits / (hits + misses))


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
