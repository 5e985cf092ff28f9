"""Feature services: the named set of features a model consumes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crmfs.definitions.metadata import Sensitivity, check_name, check_tags, coerce_sensitivity
from crmfs.definitions.view import FeatureView
from crmfs.errors import DefinitionError

WITHHOLD, ALLOW = "withhold", "allow"


@dataclass(frozen=True)
class FeatureService:
    """A named feature set, e.g. what one recommender model reads.

    >>> FeatureService("ranker_v1", features=[activity, "profile:plan"])

    A ``FeatureView`` stands for all its features; a string is a ``"view:feature"`` reference.

    ``purpose`` names what the model does with the values (``"personalization"``), and
    ``consent`` the boolean ``"view:feature"`` holding each person's consent to it: reads of
    the service give no personal values for a person whose consent is false, or unknown
    unless ``consent_when_unknown="allow"`` (status ``consent_withheld``).
    """

    name: str
    features: Sequence[FeatureView | str]
    owner: str = field(default="", kw_only=True)
    description: str = field(default="", kw_only=True)
    tags: Mapping[str, str] = field(default_factory=dict, kw_only=True)
    sensitivity: Sensitivity = field(default=Sensitivity.INTERNAL, kw_only=True)
    purpose: str | None = field(default=None, kw_only=True)
    consent: str | None = field(default=None, kw_only=True)
    consent_when_unknown: str = field(default=WITHHOLD, kw_only=True)

    def __post_init__(self) -> None:
        check_name("feature service", self.name)
        label = f"feature service {self.name!r}"
        if isinstance(self.features, str | FeatureView) or not self.features:
            raise DefinitionError(
                label, "features", "give a non-empty list of views or 'view:feature'"
            )
        for item in self.features:
            if isinstance(item, str):
                if item.count(":") != 1:
                    raise DefinitionError(label, "features", f"{item!r} is not 'view:feature'")
            elif not isinstance(item, FeatureView):
                raise DefinitionError(
                    label, "features", f"{item!r} is not a FeatureView or reference"
                )
        object.__setattr__(self, "tags", check_tags(label, self.tags))
        object.__setattr__(self, "sensitivity", coerce_sensitivity(label, self.sensitivity))
        self._check_consent(label)

    def _check_consent(self, label: str) -> None:
        if self.purpose is not None and (
            not isinstance(self.purpose, str) or not self.purpose.isidentifier()
        ):
            raise DefinitionError(label, "purpose", "must be a name such as 'personalization'")
        if self.consent is not None:
            if self.purpose is None:
                raise DefinitionError(
                    label, "purpose", "a service gated by consent names its purpose"
                )
            if not isinstance(self.consent, str) or self.consent.count(":") != 1:
                raise DefinitionError(label, "consent", f"{self.consent!r} is not 'view:feature'")
        elif self.purpose is not None:
            raise DefinitionError(
                label, "consent", f"name the feature holding consent to {self.purpose!r}"
            )
        if self.consent_when_unknown not in (WITHHOLD, ALLOW):
            raise DefinitionError(
                label, "consent_when_unknown", f"must be {WITHHOLD!r} or {ALLOW!r}"
            )

    def feature_refs(self) -> list[str]:
        refs: list[str] = []
        for item in self.features:
            if isinstance(item, FeatureView):
                refs.extend(f"{item.name}:{name}" for name in item.feature_names)
            else:
                refs.append(item)
        return refs

    def value_spec(self) -> dict[str, Any]:
        return {"name": self.name, "features": self.feature_refs()}

    def metadata_spec(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "description": self.description,
            "tags": dict(sorted(self.tags.items())),
            "sensitivity": self.sensitivity.value,
            **(
                {
                    "purpose": self.purpose,
                    "consent": self.consent,
                    "consent_when_unknown": self.consent_when_unknown,
                }
                if self.consent is not None
                else {}
            ),
        }
