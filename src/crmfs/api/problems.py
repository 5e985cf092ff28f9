"""Errors as RFC 9457 problem details (``application/problem+json``), never a 500 for bad
input: crmfs errors map to 4xx by kind, validation errors name the field."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from crmfs.errors import (
    BackendUnavailable,
    ConfigError,
    CrmfsError,
    DefinitionError,
    EntityDataError,
    FeatureNotFound,
    Forbidden,
    IdentityError,
    IngestError,
    NotApplied,
    PayloadTooLarge,
    Unauthenticated,
)

log = logging.getLogger("crmfs.api")
PROBLEM = "application/problem+json"

_STATUS: list[tuple[type[CrmfsError], int, str]] = [
    (Unauthenticated, 401, "Unauthorized"),
    (Forbidden, 403, "Forbidden"),
    (PayloadTooLarge, 413, "Content Too Large"),
    (FeatureNotFound, 404, "Not Found"),
    (IdentityError, 404, "Not Found"),
    (EntityDataError, 422, "Unprocessable Content"),
    (IngestError, 422, "Unprocessable Content"),
    (DefinitionError, 422, "Unprocessable Content"),
    (ConfigError, 422, "Unprocessable Content"),
    (NotApplied, 503, "Service Unavailable"),
    (BackendUnavailable, 503, "Service Unavailable"),
]


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM, headers=headers)


def status_of(exc: CrmfsError) -> tuple[int, str]:
    for kind, status, title in _STATUS:
        if isinstance(exc, kind):
            return status, title
    return 500, "Internal Server Error"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors: list[dict[str, str]] = []
        for e in exc.errors():
            where = _field(e.get("loc", ()))
            if all(known["field"] != where for known in errors):  # one per field, of unions
                errors.append({"field": where, "problem": e.get("msg", "invalid")})
        first = errors[0] if errors else {"field": "body", "problem": "invalid"}
        detail = f"{first['field']}: {first['problem']}"
        if len(errors) > 1:
            detail += f" (and {len(errors) - 1} more)"
        return problem(422, "Unprocessable Content", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(exc.status_code, _title(exc.status_code), str(exc.detail))

    @app.exception_handler(CrmfsError)
    async def crmfs_error(request: Request, exc: CrmfsError) -> Response:
        status, title = status_of(exc)
        if status >= 500:
            log.exception("request failed", exc_info=exc)
        return problem(status, title, str(exc))


_UNION_TAGS = frozenset({"int", "str", "float", "bool", "none", "constrained-str"})


def _field(loc: Any) -> str:
    """A validation error's field as the client wrote it (``entities.0.customer_id``),
    without the ``body`` root and pydantic's union-member tags."""
    parts = [
        str(part)
        for part in loc
        if part != "body"
        and not (
            isinstance(part, str) and (part in _UNION_TAGS or "[" in part or "function-" in part)
        )
    ]
    return ".".join(parts) or "body"


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
