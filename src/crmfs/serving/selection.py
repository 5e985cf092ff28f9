"""A feature selection compiled for online reads: requests per view and their contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crmfs.definitions import Catalog, FeatureService, FeatureView, Sensitivity
from crmfs.definitions.service import ALLOW
from crmfs.errors import NotApplied
from crmfs.serving.contract import ConsentGate, Contract, FeatureChain
from crmfs.serving.online import FeatureRequest, feature_request
from crmfs.transform.plan import ViewPlan

_RANK = {label: rank for rank, label in enumerate(Sensitivity)}  # public < ... < personal


def feature_sensitivity(view: FeatureView, name: str) -> Sensitivity:
    """A feature's label: its own or its view's, whichever is more sensitive."""
    labels = {f.name: f.sensitivity for f in view.window_features}
    labels.update((f.name, f.sensitivity) for f in view.latest_features)
    own = labels[name]
    return own if _RANK[own] >= _RANK[view.sensitivity] else view.sensitivity


@dataclass(frozen=True)
class CompiledSelection:
    """The online requests of a selection (by view), the contract they serve, the
    features read only for that contract (dropped from the answer), and the sensitivity
    label of each feature answered (what access control masks by)."""

    requests: list[tuple[FeatureRequest, list[str]]]
    contract: Contract
    hidden: list[str]
    labels: dict[str, Sensitivity]


def compile_selection(
    catalog: Catalog,
    plans: Mapping[str, ViewPlan],
    refs: Sequence[str],
    service: FeatureService | None,
) -> CompiledSelection:
    chains: dict[str, FeatureChain] = {}
    for ref in refs:
        view, name = catalog.resolve(ref)
        chain = view.fallbacks.get(name)
        if chain:
            chains[ref] = FeatureChain(view.name, chain)
    consent = None
    if service is not None and service.consent is not None and service.purpose is not None:
        consent_view, _ = catalog.resolve(service.consent)
        personal = frozenset(ref for ref in refs if _is_personal(catalog, ref, consent_view))
        consent = ConsentGate(
            service.purpose, service.consent, service.consent_when_unknown == ALLOW, personal
        )
    contract = Contract(chains, consent)
    hidden = [ref for ref in contract.extra_refs() if ref not in refs]
    grouped: dict[str, tuple[ViewPlan, list[str], list[str]]] = {}
    for ref in [*refs, *hidden]:
        view, name = catalog.resolve(ref)
        plan = plans.get(view.name)
        if plan is None:
            raise NotApplied(view.name)
        entry = grouped.setdefault(view.name, (plan, [], []))
        if ref not in entry[2]:
            entry[1].append(name)
            entry[2].append(ref)
    requests = [(feature_request(plan, names), labels) for plan, names, labels in grouped.values()]
    answered = [ref for _, labels in requests for ref in labels if ref not in hidden]
    sensitivity = {ref: feature_sensitivity(*catalog.resolve(ref)) for ref in answered}
    return CompiledSelection(requests, contract, hidden, sensitivity)


def _is_personal(catalog: Catalog, ref: str, consent_view: FeatureView) -> bool:
    """Values about the person consent is asked of: features of views of the consent
    view's entity, and any feature labelled personal."""
    view, name = catalog.resolve(ref)
    return (
        view.entity == consent_view.entity
        or feature_sensitivity(view, name) is Sensitivity.PERSONAL
    )
