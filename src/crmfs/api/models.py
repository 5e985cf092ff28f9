"""Request and response bodies of the HTTP API (they make its OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

EntityValue = Annotated[str, Field(max_length=1024)] | int
EntityRow = dict[Annotated[str, Field(min_length=1, max_length=128)], EntityValue]
MAX_ENTITIES = 1_000


class FeaturesRequest(BaseModel):
    """Online features of entities, by feature list or by feature service (one of them)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [{"required": ["features"]}, {"required": ["feature_service"]}]
        },
    )

    # Not nullable: leave a field out instead (the schema then says "one of the two"); the
    # None defaults mean "left out" and never pass validation (hence the type ignores).
    features: list[Annotated[str, Field(min_length=3, max_length=256)]] = Field(
        default=None,  # type: ignore[arg-type]
        min_length=1,
        max_length=500,
        description="'view:feature' references; give this or feature_service",
        examples=[["browsing:visits_1h", "buying:spend_30d"]],
    )
    feature_service: Annotated[str, Field(min_length=1, max_length=128)] = Field(  # type: ignore[assignment]
        default=None, description="a feature service's name; give this or features"
    )
    entities: (
        Annotated[list[EntityRow], Field(min_length=1, max_length=MAX_ENTITIES)]
        | dict[str, list[EntityValue]]
    ) = Field(
        description=(
            "entity rows: a list of objects (join keys, or identifiers such as email for"
            " golden-id entities), or columns (Feast's shape): {key: [values]}"
        ),
        examples=[[{"customer_id": "c1"}, {"customer_id": "c2"}]],
    )
    max_age_s: float = Field(  # type: ignore[assignment]
        default=None,
        ge=0,
        le=10 * 365 * 86400,
        description="serve as fresh only values at most this old (s); older are stale",
    )

    @model_validator(mode="after")
    def _one_selection(self) -> FeaturesRequest:
        if (self.features is None) == (self.feature_service is None):
            raise ValueError("give exactly one of 'features' and 'feature_service'")
        return self


class FeatureColumn(BaseModel):
    values: list[Any]
    statuses: list[str] = Field(
        description="fresh, stale, missing, fallback, consent_withheld or masked"
    )
    ages_s: list[float | None]
    fallbacks: list[str | None] | None = Field(
        default=None, description="which fallback served each value (None: its own)"
    )


class FeaturesResponse(BaseModel):
    entities: list[dict[str, Any]]
    features: dict[str, FeatureColumn]


class IngestResponse(BaseModel):
    source: str
    received: int
    accepted: int
    duplicates: int
    quarantined: int
    reasons: dict[str, int]


class IdentityResponse(BaseModel):
    kind: str
    value: str
    golden_id: str | None


class Health(BaseModel):
    status: str
    detail: dict[str, Any] = Field(default_factory=dict)


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}}
    for code in (400, 401, 403, 404, 413, 415, 422, 503)
}
