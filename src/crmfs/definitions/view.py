"""Feature views: features of one entity computed from one event source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crmfs.definitions.entity import Entity
from crmfs.definitions.fallback import Fallback, FallbackChains, check_fallbacks
from crmfs.definitions.features import Aggregation, Latest, WindowFeature
from crmfs.definitions.filters import Compare, Expr, IsIn
from crmfs.definitions.identifiers import GOLDEN_ID
from crmfs.definitions.metadata import Sensitivity, check_name, check_tags, coerce_sensitivity
from crmfs.definitions.relation import Relation
from crmfs.definitions.source import EventSource
from crmfs.definitions.types import FieldType
from crmfs.errors import DefinitionError
from crmfs.timestamps import Duration, parse_duration


@dataclass(frozen=True)
class LatestFeature:
    """A resolved latest-value feature."""

    name: str
    field: str
    output_type: FieldType
    sensitivity: Sensitivity
    description: str


@dataclass(frozen=True)
class FeatureView:
    """Features of one entity from one source: window aggregations and latest values.

    >>> activity = FeatureView(
    ...     "activity", entity=customer, source=clicks,
    ...     features=[Aggregation("clicks", "count", windows=["1h", "7d"]), Latest("last_page", "page")],
    ...     ttl="30d", freshness_sla="5m",
    ... )

    ``filter`` keeps only matching events (both runtimes evaluate it with SQL's null
    semantics); ``ttl`` bounds the age of latest values; ``freshness_sla`` is the age past
    which served values are reported stale; ``key_field`` is the source field holding the
    entity key (default: the entity's join key).
    """

    name: str
    entity: Entity
    source: EventSource
    features: Sequence[Aggregation | Latest]
    filter: Expr | None = None
    ttl: Duration | None = None
    freshness_sla: Duration | None = None
    key_field: str | None = None
    via: Relation | None = None
    owner: str = field(default="", kw_only=True)
    description: str = field(default="", kw_only=True)
    tags: Mapping[str, str] = field(default_factory=dict, kw_only=True)
    sensitivity: Sensitivity = field(default=Sensitivity.INTERNAL, kw_only=True)
    fallback: Mapping[str, Sequence[Fallback]] | Sequence[Fallback] | None = field(
        default=None, kw_only=True
    )
    window_features: tuple[WindowFeature, ...] = field(init=False, repr=False)
    latest_features: tuple[LatestFeature, ...] = field(init=False, repr=False)
    fallbacks: FallbackChains = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_name("feature view", self.name)
        label = f"feature view {self.name!r}"
        if not isinstance(self.entity, Entity):
            raise DefinitionError(label, "entity", "must be an Entity")
        if not isinstance(self.source, EventSource):
            raise DefinitionError(label, "source", "must be an EventSource")
        schema = self.source.fields
        if self.via is not None:
            self._check_rollup(label)
            object.__setattr__(self, "key_field", self.via.key_column)
        elif self.entity.identity:
            self._check_identity_source(label)
            object.__setattr__(self, "key_field", GOLDEN_ID)
        else:
            self._check_key_field(label, schema)
        for name in ("ttl", "freshness_sla"):
            raw = getattr(self, name)
            if raw is not None:
                try:
                    object.__setattr__(self, name, parse_duration(raw))
                except ValueError as exc:
                    raise DefinitionError(label, name, str(exc)) from None
        windows: list[WindowFeature] = []
        latest: list[LatestFeature] = []
        if isinstance(self.features, Aggregation | Latest) or not self.features:
            raise DefinitionError(
                label, "features", "give a non-empty list of Aggregation or Latest"
            )
        for feature in self.features:
            if isinstance(feature, Aggregation):
                windows.extend(feature.expand(self.name, schema))
            elif isinstance(feature, Latest):
                output_type = feature.check(self.name, schema)
                latest.append(
                    LatestFeature(
                        feature.name,
                        feature.field,
                        output_type,
                        coerce_sensitivity(label, feature.sensitivity),
                        feature.description,
                    )
                )
            else:
                raise DefinitionError(
                    label, "features", f"{feature!r} is not an Aggregation or Latest"
                )
        names = [f.name for f in windows] + [f.name for f in latest]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DefinitionError(
                label, "features", f"duplicate feature names: {', '.join(duplicates)}"
            )
        object.__setattr__(self, "window_features", tuple(windows))
        object.__setattr__(self, "latest_features", tuple(latest))
        object.__setattr__(
            self, "fallbacks", check_fallbacks(label, self.fallback, self.output_types)
        )
        if self.filter is not None:
            _check_filter(label, self.filter, schema)
        object.__setattr__(self, "tags", check_tags(label, self.tags))
        object.__setattr__(self, "sensitivity", coerce_sensitivity(label, self.sensitivity))

    @property
    def output_types(self) -> dict[str, FieldType]:
        """Each feature's value type (of the list's items for ``last_n``)."""
        types = {f.name: f.output_type for f in self.window_features}
        return types | {f.name: f.output_type for f in self.latest_features}

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.window_features] + [f.name for f in self.latest_features]

    def _check_rollup(self, label: str) -> None:
        via = self.via
        if not isinstance(via, Relation):
            raise DefinitionError(label, "via", "must be a Relation")
        if self.entity != via.parent:
            raise DefinitionError(
                label,
                "entity",
                f"a view rolled up by relation {via.name!r} describes its parent entity"
                f" {via.parent.name!r}, not {self.entity.name!r}",
            )
        if self.key_field is not None:
            raise DefinitionError(label, "key_field", "a rolled-up view takes keys from `via`")
        if not any(kind.is_strong for kind in self.source.identifier_kinds.values()):
            raise DefinitionError(
                label,
                "source",
                f"source {self.source.name!r} declares no strong identifier, so its events"
                f" cannot be rolled up by relation {via.name!r}",
            )

    def _check_identity_source(self, label: str) -> None:
        if self.key_field is not None:
            raise DefinitionError(
                label,
                "key_field",
                f"entity {self.entity.name!r} is keyed by golden ids (identity=True): events"
                " take their key from the identity service, not from a field",
            )
        if not any(kind.is_strong for kind in self.source.identifier_kinds.values()):
            raise DefinitionError(
                label,
                "source",
                f"source {self.source.name!r} declares no strong identifier (email, phone, CRM"
                f" id ...), so its events cannot be keyed by the golden ids of entity"
                f" {self.entity.name!r}",
            )

    def _check_key_field(self, label: str, schema: Mapping[str, FieldType]) -> None:
        key_field = self.key_field or self.entity.join_key
        if key_field not in schema:
            raise DefinitionError(
                label, "key_field", f"{key_field!r} is not in source {self.source.name!r}"
            )
        if schema[key_field] is not self.entity.dtype:
            raise DefinitionError(
                label,
                "key_field",
                f"{key_field!r} is {schema[key_field]}, entity key is {self.entity.dtype}",
            )
        object.__setattr__(self, "key_field", key_field)

    @property
    def ttl_seconds(self) -> int | None:
        return self.ttl  # type: ignore[return-value]  # normalized to seconds in __post_init__

    @property
    def sla_seconds(self) -> int | None:
        return self.freshness_sla  # type: ignore[return-value]  # normalized in __post_init__

    @property
    def key(self) -> str:
        assert self.key_field is not None  # set in __post_init__
        return self.key_field

    def value_spec(self) -> dict[str, Any]:
        """What determines the values: a change here makes a new version."""
        return {
            "name": self.name,
            "entity": self.entity.value_spec(),
            "source": self.source.value_spec(),
            "key_field": self.key,
            **({"via": self.via.value_spec()} if self.via is not None else {}),
            "windows": [f.value_spec() for f in self.window_features],
            "latest": [{"name": f.name, "field": f.field} for f in self.latest_features],
            "filter": self.filter.to_spec() if self.filter is not None else None,
            "ttl": self.ttl_seconds,
        }

    def metadata_spec(self) -> dict[str, Any]:
        """What does not change values: edits here keep the version."""
        return {
            "owner": self.owner,
            "description": self.description,
            "tags": dict(sorted(self.tags.items())),
            "sensitivity": self.sensitivity.value,
            "freshness_sla": self.sla_seconds,
            **(
                {
                    "fallback": {
                        name: [step.to_spec() for step in chain]
                        for name, chain in sorted(self.fallbacks.items())
                    }
                }
                if self.fallbacks
                else {}
            ),
            "features": {
                **{
                    f.name: {"description": f.description, "sensitivity": f.sensitivity.value}
                    for f in self.window_features
                },
                **{
                    f.name: {"description": f.description, "sensitivity": f.sensitivity.value}
                    for f in self.latest_features
                },
            },
        }


_LITERAL_TYPES: dict[FieldType, tuple[type, ...]] = {
    FieldType.STRING: (str,),
    FieldType.INT: (int,),
    FieldType.FLOAT: (int, float),
    FieldType.BOOL: (bool,),
}


def _check_filter(label: str, expr: Expr, schema: dict[str, FieldType]) -> None:
    for column in sorted(expr.columns()):
        if column not in schema:
            raise DefinitionError(label, "filter", f"column {column!r} is not in the source schema")
    for node in _walk(expr):
        literals: tuple[object, ...] = ()
        if isinstance(node, Compare):
            literals = (node.value,)
            column = node.column
        elif isinstance(node, IsIn):
            literals = node.values
            column = node.column
        else:
            continue
        allowed = _LITERAL_TYPES.get(schema[column])
        if allowed is None:
            raise DefinitionError(
                label, "filter", f"column {column!r} ({schema[column]}) cannot be compared"
            )
        for literal in literals:
            bad_bool = isinstance(literal, bool) and schema[column] is not FieldType.BOOL
            if bad_bool or not isinstance(literal, allowed):
                raise DefinitionError(
                    label,
                    "filter",
                    f"{literal!r} cannot be compared with {column!r} ({schema[column]})",
                )


def _walk(expr: Expr) -> list[Expr]:
    nodes = [expr]
    for child in ("left", "right", "operand"):
        sub = getattr(expr, child, None)
        if isinstance(sub, Expr):
            nodes.extend(_walk(sub))
    return nodes
