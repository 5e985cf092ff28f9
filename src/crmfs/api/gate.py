"""Who may do what: API keys to principals, and every refusal or mask audited and counted."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import Request

from crmfs.api.metrics import ACCESS
from crmfs.definitions import Sensitivity
from crmfs.errors import Forbidden, Unauthenticated
from crmfs.serving.access import (
    OPEN_ACCESS,
    Ability,
    ApiKeys,
    Principal,
    decide_read,
    describe,
)
from crmfs.serving.audit import AuditLog

_BEARER = "bearer "


class Gate:
    def __init__(self, keys: ApiKeys, audit: AuditLog, refuse_sensitive: bool) -> None:
        self.keys = keys
        self.audit = audit
        self.refuse_sensitive = refuse_sensitive

    def principal(self, request: Request, ability: Ability) -> Principal:
        """The caller, allowed ``ability`` (401 without a valid key, 403 without the role)."""
        if not self.keys.configured:
            return OPEN_ACCESS
        try:
            principal = self.keys.authenticate(_key_of(request))
        except Unauthenticated as exc:
            self._refused("unauthenticated", request, str(exc))
            raise
        try:
            principal.require(ability)
        except Forbidden as exc:
            self._refused("forbidden", request, str(exc), principal)
            raise
        return principal

    def masked_features(
        self,
        request: Request,
        principal: Principal,
        service: str | None,
        labels: Mapping[str, Sensitivity],
    ) -> list[str]:
        """The features to mask for ``principal`` (403 if it may not read the selection, or
        if sensitive features are refused rather than masked)."""
        try:
            return decide_read(principal, service, labels, self.refuse_sensitive)
        except Forbidden as exc:
            self._refused("forbidden", request, str(exc), principal)
            raise

    def record_masked(
        self,
        request: Request,
        principal: Principal,
        masked: Sequence[str],
        labels: Mapping[str, Sensitivity],
        entities: int,
    ) -> None:
        ACCESS.labels("masked").inc()
        self.audit.record(
            "masked",
            path=request.url.path,
            **describe(principal),
            features={ref: labels[ref].value for ref in masked},
            entities=entities,
        )

    def _refused(
        self, decision: str, request: Request, reason: str, principal: Principal | None = None
    ) -> None:
        ACCESS.labels(decision).inc()
        who = describe(principal) if principal is not None else {}
        client = request.client.host if request.client is not None else None
        self.audit.record(
            decision,
            path=request.url.path,
            method=request.method,
            client=client,
            reason=reason,
            **who,
        )


def _key_of(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is not None and header[: len(_BEARER)].lower() == _BEARER:
        return header[len(_BEARER) :].strip()
    return request.headers.get("x-api-key")
