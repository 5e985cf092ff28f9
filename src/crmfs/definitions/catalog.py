"""The set of definitions of a project, checked as a whole."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from crmfs.definitions.entity import Entity
from crmfs.definitions.relation import Relation
from crmfs.definitions.service import FeatureService
from crmfs.definitions.source import EventSource
from crmfs.definitions.types import FieldType
from crmfs.definitions.view import FeatureView
from crmfs.errors import DefinitionError, FeatureNotFound

Definition = Entity | EventSource | FeatureView | FeatureService


def fingerprint(spec: Any) -> str:
    """A short, stable hash of a JSON-able spec."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Catalog:
    """All definitions of a project by name, cross-checked (unique names, references resolve)."""

    entities: dict[str, Entity]
    sources: dict[str, EventSource]
    views: dict[str, FeatureView]
    services: dict[str, FeatureService]

    @classmethod
    def of(cls, definitions: Iterable[object]) -> Catalog:
        """Collect definitions (other objects are ignored), including those views reference."""
        entities: dict[str, Entity] = {}
        sources: dict[str, EventSource] = {}
        views: dict[str, FeatureView] = {}
        services: dict[str, FeatureService] = {}
        items = list(definitions)
        for item in items:
            if isinstance(item, FeatureView):
                items.extend([item.entity, item.source])
                if item.via is not None:
                    items.extend([item.via.child, item.via.source])
            if isinstance(item, FeatureService):
                items.extend(v for v in item.features if isinstance(v, FeatureView))
        buckets: dict[type, dict[str, Any]] = {
            Entity: entities,
            EventSource: sources,
            FeatureView: views,
            FeatureService: services,
        }
        for item in items:
            bucket = buckets.get(type(item))
            if bucket is None:
                continue
            item = cast(Definition, item)
            existing = bucket.get(item.name)
            if existing is not None and existing is not item and existing != item:
                kind = type(item).__name__
                raise DefinitionError(f"{kind} {item.name!r}", "name", "defined twice, differently")
            bucket[item.name] = item
        catalog = cls(entities, sources, views, services)
        for service in services.values():
            for ref in service.feature_refs():
                try:
                    catalog.resolve(ref)
                except FeatureNotFound as exc:
                    raise DefinitionError(
                        f"feature service {service.name!r}", "features", str(exc)
                    ) from None
            if service.consent is not None:
                catalog._check_consent_feature(service)
        return catalog

    def _check_consent_feature(self, service: FeatureService) -> None:
        label = f"feature service {service.name!r}"
        assert service.consent is not None
        try:
            view, name = self.resolve(service.consent)
        except FeatureNotFound as exc:
            raise DefinitionError(label, "consent", str(exc)) from None
        output = view.output_types
        if output[name] is not FieldType.BOOL:
            raise DefinitionError(
                label, "consent", f"{service.consent!r} is {output[name]}, not a bool feature"
            )

    def resolve(self, ref: str) -> tuple[FeatureView, str]:
        """The view and feature name of a ``"view:feature"`` reference."""
        view_name, sep, feature = ref.partition(":")
        view = self.views.get(view_name)
        if not sep or view is None or feature not in view.feature_names:
            known = [f"{v.name}:{f}" for v in self.views.values() for f in v.feature_names]
            raise FeatureNotFound(ref, known)
        return view, feature

    @property
    def relations(self) -> dict[str, Relation]:
        """The relations views roll up by, by name."""
        found: dict[str, Relation] = {}
        for view in self.views.values():
            if view.via is not None:
                existing = found.setdefault(view.via.name, view.via)
                if existing != view.via:
                    raise DefinitionError(
                        f"relation {view.via.name!r}", "name", "defined twice, differently"
                    )
        return found

    def views_of_source(self, source: str) -> list[FeatureView]:
        return [v for v in self.views.values() if v.source.name == source]
