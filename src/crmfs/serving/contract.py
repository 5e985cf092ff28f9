"""The freshness contract of a read: a request's maximum age, fallback chains, consent.

Applied to an ``OnlineResponse`` after the online read, in this order:

1. ``max_age_s`` (a request's own bound): a fresh value older than it is ``stale``;
2. fallback chains (``FeatureView(fallback=...)``): a ``stale`` or ``missing`` value is
   replaced by the first step that gives one: another feature of the view that is fresh,
   a default, or the value the batch runtime computes from the event log (``offline``).
   The value's status becomes ``fallback`` and ``fallbacks`` names the step;
3. consent (``FeatureService(consent=...)``): a person without consent to the service's
   purpose gets no personal values (status ``consent_withheld``).

A stale value with no fallback that serves is still served, with status ``stale``: stale
values are never served silently, nor dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from crmfs.definitions import Fallback, FallbackKind
from crmfs.serving.online import FRESH, MISSING, STALE, OnlineResponse

FALLBACK = "fallback"
CONSENT_WITHHELD = "consent_withheld"

# (feature refs, row positions) -> each ref's values at those rows, computed offline now
OfflineValues = Callable[[Sequence[str], Sequence[int]], Mapping[str, list[object]]]


@dataclass(frozen=True)
class FeatureChain:
    """The fallback chain of one requested feature, with its steps' references."""

    view: str
    steps: tuple[Fallback, ...]

    def feature_refs(self) -> list[str]:
        return [
            f"{self.view}:{step.feature_name}"
            for step in self.steps
            if step.kind is FallbackKind.FEATURE
        ]


@dataclass(frozen=True)
class ConsentGate:
    """Which feature holds consent, what an unknown consent means, what it withholds."""

    purpose: str
    feature_ref: str
    allow_unknown: bool
    personal_refs: frozenset[str]


@dataclass(frozen=True)
class Contract:
    """What a compiled feature selection needs beyond the online read."""

    chains: Mapping[str, FeatureChain] = field(default_factory=dict)
    consent: ConsentGate | None = None

    @property
    def reads_offline(self) -> bool:
        """Whether a chain may query the event log (slow: servers run it off their loop)."""
        return any(
            step.kind is FallbackKind.OFFLINE
            for chain in self.chains.values()
            for step in chain.steps
        )

    def extra_refs(self) -> list[str]:
        """Features read only to serve the contract (fallback targets, consent)."""
        extra = [ref for chain in self.chains.values() for ref in chain.feature_refs()]
        if self.consent is not None:
            extra.append(self.consent.feature_ref)
        return list(dict.fromkeys(extra))


def enforce(
    response: OnlineResponse,
    contract: Contract,
    max_age_s: float | None,
    offline: OfflineValues | None,
    offline_age_s: Callable[[], float | None] = lambda: None,
) -> None:
    """Apply the request's maximum age, fallbacks and consent to ``response`` in place."""
    if max_age_s is not None:
        _bound_age(response, max_age_s)
    if contract.chains:
        _fall_back(response, contract.chains, offline, offline_age_s)
    if contract.consent is not None:
        _withhold(response, contract.consent)


def _bound_age(response: OnlineResponse, max_age_s: float) -> None:
    for name in response.features:
        statuses = response.statuses[name]
        for i, age in enumerate(response.ages[name]):
            if statuses[i] == FRESH and age is not None and age > max_age_s:
                statuses[i] = STALE


def _fall_back(
    response: OnlineResponse,
    chains: Mapping[str, FeatureChain],
    offline: OfflineValues | None,
    offline_age_s: Callable[[], float | None],
) -> None:
    offline_wanted: dict[str, list[int]] = {}
    for ref, chain in chains.items():
        if ref not in response.statuses:
            continue
        statuses = response.statuses[ref]
        pending = [i for i, s in enumerate(statuses) if s in (STALE, MISSING)]
        for step in chain.steps:
            if not pending:
                break
            if step.kind is FallbackKind.OFFLINE:
                if offline is None:  # this read cannot reach the offline store
                    continue
                offline_wanted[ref] = pending  # computed below, for every feature at once
                break
            pending = _serve_step(response, ref, chain.view, step, pending)
    if offline_wanted and offline is not None:
        _serve_offline(response, chains, offline_wanted, offline, offline_age_s())


def _serve_step(
    response: OnlineResponse, ref: str, view: str, step: Fallback, pending: list[int]
) -> list[int]:
    """Serve ``pending`` rows of ``ref`` by a feature or default step; the rows left."""
    label = step.label(view)
    left = []
    for i in pending:
        if step.kind is FallbackKind.DEFAULT:
            _set(response, ref, i, step.value, None, label)
            continue
        other = f"{view}:{step.feature_name}"
        if response.statuses[other][i] == FRESH:
            _set(response, ref, i, response.values[other][i], response.ages[other][i], label)
        else:
            left.append(i)
    return left


def _serve_offline(
    response: OnlineResponse,
    chains: Mapping[str, FeatureChain],
    wanted: dict[str, list[int]],
    offline: OfflineValues,
    age_s: float | None,
) -> None:
    rows = sorted({i for positions in wanted.values() for i in positions})
    computed = offline(list(wanted), rows)
    at = {row: n for n, row in enumerate(rows)}
    for ref, positions in wanted.items():
        chain = chains[ref]
        values = computed[ref]
        later = chain.steps[[s.kind for s in chain.steps].index(FallbackKind.OFFLINE) + 1 :]
        left = []
        for i in positions:
            value = values[at[i]]
            if value is None:
                left.append(i)
            else:
                _set(response, ref, i, value, age_s, FallbackKind.OFFLINE.value)
        for step in later:  # steps after the offline one, for rows it gave nothing
            if not left or step.kind is FallbackKind.OFFLINE:
                break
            left = _serve_step(response, ref, chain.view, step, left)


def _set(
    response: OnlineResponse, ref: str, i: int, value: object, age: float | None, label: str
) -> None:
    response.values[ref][i] = value
    response.statuses[ref][i] = FALLBACK
    response.ages[ref][i] = age
    response.fallbacks_of(ref)[i] = label


def _withhold(response: OnlineResponse, gate: ConsentGate) -> None:
    consent = response.values[gate.feature_ref]
    refused = [
        i
        for i, given in enumerate(consent)
        if given is False or (given is None and not gate.allow_unknown)
    ]
    if not refused:
        return
    for ref in response.features:
        if ref not in gate.personal_refs:
            continue
        values, statuses, ages = response.values[ref], response.statuses[ref], response.ages[ref]
        fallbacks = response.fallbacks.get(ref)
        for i in refused:
            values[i] = None
            statuses[i] = CONSENT_WITHHELD
            ages[i] = None
            if fallbacks is not None:
                fallbacks[i] = None
