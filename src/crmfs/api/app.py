"""The FastAPI application of ``crmfs serve``.

Reads run on the event loop (an online read is a fraction of a millisecond); work that may
take longer (ingestion, offline fallbacks, a read while ingestion holds the store) runs in
the thread pool. One lock keeps the store to one thread at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crmfs.api import problems
from crmfs.api.features import FeatureReads
from crmfs.api.gate import Gate
from crmfs.api.ingest import parse_events
from crmfs.api.metrics import (
    INGESTED,
    QUARANTINED,
    exposition,
    request_latency,
    requests_done,
)
from crmfs.api.models import (
    PROBLEM_RESPONSES,
    FeaturesRequest,
    FeaturesResponse,
    Health,
    IdentityResponse,
    IngestResponse,
)
from crmfs.api.settings import ServerSettings
from crmfs.errors import CrmfsError, PayloadTooLarge
from crmfs.serving.access import KEYS_FILE, Ability, ApiKeys, Principal
from crmfs.serving.audit import AUDIT_FILE, AuditLog
from crmfs.storage.ports import Watermark
from crmfs.store import FeatureStore

T = TypeVar("T")
_SECURED: dict[str, Any] = {"security": [{"bearer": []}, {"apiKey": []}]}


def _caller(ability: Ability) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency giving the caller, allowed ``ability``: as a dependency, a request
    without a valid key gets 401 (or 403) before its body is even validated. (Async, so
    that FastAPI calls it on the loop rather than in its thread pool.)"""

    async def caller(request: Request) -> Principal:
        gate: Gate = request.app.state.gate
        return gate.principal(request, ability)

    return caller


Reader = Annotated[Principal, Depends(_caller(Ability.READ))]
Ingester = Annotated[Principal, Depends(_caller(Ability.INGEST))]
Identifier = Annotated[Principal, Depends(_caller(Ability.IDENTITY))]
Admin = Annotated[Principal, Depends(_caller(Ability.ADMIN))]


class StoreAccess:
    """The store, one thread at a time: inline when free, else from the thread pool."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self._lock = threading.Lock()

    def _locked(self, work: Callable[[], T]) -> T:
        with self._lock:
            return work()

    async def run(self, work: Callable[[], T], *, slow: bool = False) -> T:
        if not slow and self._lock.acquire(blocking=False):
            try:
                return work()
            finally:
                self._lock.release()
        return await run_in_threadpool(self._locked, work)


def create_app(store: FeatureStore, settings: ServerSettings | None = None) -> FastAPI:
    """The HTTP API over ``store`` (``server`` settings from its crmfs.yaml by default)."""
    settings = settings or ServerSettings.of(store.config.server)
    data = store.config.data_dir
    gate = Gate(
        ApiKeys(data / KEYS_FILE, settings.roles),
        AuditLog(data / AUDIT_FILE),
        settings.refuse_sensitive,
    )
    access = StoreAccess(store)
    reads = FeatureReads(store, gate, settings, access)
    started_generation = store.registry.generation()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        reads.close()
        gate.audit.close()

    app = FastAPI(
        lifespan=lifespan,
        title="crmfs feature server",
        version=_version(),
        description=(
            "Online features with freshness, fallbacks, access control and consent;"
            " event ingestion; identity lookup. Errors are application/problem+json."
        ),
    )
    app.state.reads = reads

    app.state.gate = gate
    problems.install(app)
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(_Timing)

    @app.get("/health", response_model=Health, tags=["operations"])
    async def health() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    def _readiness() -> tuple[Watermark, int]:
        store.plans()  # raises if the definitions are not applied
        return store.online.watermark(), store.registry.generation()

    @app.get(
        "/ready",
        response_model=Health,
        tags=["operations"],
        responses={503: PROBLEM_RESPONSES[503]},
    )
    async def ready() -> Any:
        """Readiness: definitions applied, unchanged since this worker started, and the
        online store answers."""
        try:
            mark, generation = await access.run(_readiness)
        except CrmfsError as exc:
            return problems.problem(503, "Service Unavailable", f"not ready: {exc}")
        if generation != started_generation:
            return problems.problem(
                503,
                "Service Unavailable",
                "not ready: definitions were applied since this server started"
                f" (registry generation {started_generation} -> {generation}); restart it",
            )
        return Health(status="ready", detail={"watermark_seq": mark.seq})

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics (every worker's, added up)."""
        reads.update_cache_counters()
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    @app.post(
        "/v1/features",
        response_model=FeaturesResponse,
        responses=PROBLEM_RESPONSES,
        tags=["features"],
        openapi_extra=_SECURED,
    )
    async def features(body: FeaturesRequest, request: Request, caller: Reader) -> Response:
        """Online features of one or many entities, each value with its status and age."""
        return await reads.serve(body, request, caller)

    @app.post(
        "/v1/sources/{source}/events",
        response_model=IngestResponse,
        responses=PROBLEM_RESPONSES,
        tags=["ingestion"],
        openapi_extra={
            **_SECURED,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            },
        },
    )
    async def ingest(source: str, request: Request, caller: Ingester) -> IngestResponse:
        """Ingest events (a JSON array, or NDJSON) through the same pipeline as Python;
        records that cannot be parsed or fail validation are quarantined with the reason."""
        records, rejected = parse_events(await request.body(), request.headers.get("content-type"))
        report = await access.run(
            lambda: store.ingest(source, records, rejected=rejected), slow=True
        )
        INGESTED.labels(source).inc(report.accepted)
        QUARANTINED.labels(source).inc(report.quarantined)
        return IngestResponse(
            source=report.source,
            received=report.received,
            accepted=report.accepted,
            duplicates=report.duplicates,
            quarantined=report.quarantined,
            reasons=report.reasons,
        )

    @app.get(
        "/v1/identity/{kind}/{value}",
        response_model=IdentityResponse,
        responses=PROBLEM_RESPONSES,
        tags=["identity"],
        openapi_extra=_SECURED,
    )
    async def identity(kind: str, value: str, caller: Identifier) -> IdentityResponse:
        """The golden id an identifier (email, phone, crm_contact_id ...) stands for now;
        null when it names no one."""
        golden = await access.run(lambda: store.identity.resolve(kind, value))
        return IdentityResponse(kind=kind, value=value, golden_id=golden)

    @app.get(
        "/v1/services",
        responses=PROBLEM_RESPONSES,
        tags=["features"],
        openapi_extra=_SECURED,
    )
    async def services(caller: Reader) -> dict[str, Any]:
        """Feature services and views this server serves."""
        return reads.catalog_summary()

    @app.get(
        "/v1/admin/audit",
        responses=PROBLEM_RESPONSES,
        tags=["admin"],
        openapi_extra=_SECURED,
    )
    async def audit(caller: Admin, limit: int = 100) -> dict[str, Any]:
        """The last refused or masked requests (newest last)."""
        bounded = max(1, min(limit, 10_000))
        return {"records": await run_in_threadpool(gate.audit.recent, bounded)}

    @app.post(
        "/v1/admin/cache/clear",
        responses=PROBLEM_RESPONSES,
        tags=["admin"],
        openapi_extra=_SECURED,
    )
    async def clear_cache(caller: Admin) -> dict[str, Any]:
        """Drop this worker's cached states."""
        return {"cleared": reads.clear_cache()}

    app.openapi_schema = None
    _document_security(app)
    return app


class _BodyLimit:
    """413 (as a problem) for a request body over ``limit`` bytes: at once when its
    Content-Length says so, else when the bytes read pass it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                response = problems.problem(413, "Content Too Large", self._detail())
                await response(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise PayloadTooLarge(self._detail())
            return message

        await self.app(scope, counted, send)

    def _detail(self) -> str:
        return f"body: over this server's limit of {self.limit:,} bytes (server.max_body_mb)"


class _Timing:
    """Latency and status of every request, by route (a plain ASGI middleware: cheaper than
    Starlette's ``BaseHTTPMiddleware`` on the hot path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            request_latency(endpoint).observe(time.perf_counter() - started)
            requests_done(endpoint, status).inc()


def _document_security(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _version() -> str:
    from crmfs import __version__

    return __version__
