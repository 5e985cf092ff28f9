"""Online reads: values computed from tiles at read time, each with its age and status.

Status rules (docs/semantics.md, "Freshness"):

- ``missing``: no value (the entity is unknown to the view, the window has no value, or
  a latest value is older than the view's TTL);
- ``stale``: the online store has not heard from the log for longer than the view's
  freshness SLA (the pipeline may be behind), so the value may be outdated;
- ``fresh``: otherwise.

``serving.contract`` adds ``fallback`` and ``consent_withheld``.

``age`` (seconds) is how old the information is: for latest values, the time since the
event; for window aggregates, the time since the online store last applied the log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from crmfs.definitions import FieldType
from crmfs.runtimes.gc_pause import gc_paused
from crmfs.runtimes.streaming.reader import ReadPlan, Values
from crmfs.runtimes.streaming.state import decode_frozen
from crmfs.storage.ports import EntityKey, Watermark
from crmfs.timestamps import MICROS_PER_SECOND, from_micros
from crmfs.transform.plan import PlannedWindow, ViewPlan

FRESH, STALE, MISSING = "fresh", "stale", "missing"


class ViewReader(Protocol):
    """What serving reads through: an online store, or a cache in front of one."""

    def read_views(
        self, reads: Sequence[tuple[str, Sequence[EntityKey]]]
    ) -> tuple[Watermark, list[list[bytes | None]]]: ...


@dataclass(frozen=True)
class FeatureRequest:
    """The features asked of one view, as positions in its plan's outputs."""

    plan: ViewPlan
    names: list[str]
    positions: list[int]
    timestamp_outputs: list[bool]
    read_plan: ReadPlan
    windows: list[PlannedWindow]  # the plan's, listed once
    table: str  # the plan's online table


@dataclass
class OnlineResponse:
    """Columnar answer: for each feature, a value, a status and an age per entity row."""

    entity_rows: list[dict[str, Any]]
    features: list[str]
    values: dict[str, list[Any]]
    statuses: dict[str, list[str]]
    ages: dict[str, list[float | None]]
    fallbacks: dict[str, list[str | None]] = field(default_factory=dict)

    def fallbacks_of(self, feature: str) -> list[str | None]:
        """Which fallback served each row of ``feature`` (None: its own value)."""
        found = self.fallbacks.get(feature)
        if found is None:
            found = self.fallbacks[feature] = [None] * len(self.entity_rows)
        return found

    def drop(self, features: Sequence[str]) -> None:
        """Forget features read only to serve the contract."""
        gone = set(features)
        self.features = [f for f in self.features if f not in gone]
        for name in gone:
            for column in (self.values, self.statuses, self.ages, self.fallbacks):
                column.pop(name, None)

    def to_dict(self) -> dict[str, list[Any]]:
        """Feast-style columns: entity keys, then one column per feature."""
        out: dict[str, list[Any]] = {}
        for key in self.entity_rows[0] if self.entity_rows else {}:
            out[key] = [row[key] for row in self.entity_rows]
        out.update(self.values)
        return out

    def rows(self) -> list[dict[str, dict[str, Any]]]:
        """One dict per entity row: feature → {value, status, age_s[, fallback]}."""
        return [
            {
                f: {
                    "value": self.values[f][i],
                    "status": self.statuses[f][i],
                    "age_s": self.ages[f][i],
                    **({"fallback": self.fallbacks[f][i]} if f in self.fallbacks else {}),
                }
                for f in self.features
            }
            for i in range(len(self.entity_rows))
        ]


# Decoding makes thousands of short-lived tuples, none in a cycle: with the collector on, it
# runs over them again and again (a read costs up to twice as much). They are freed by
# reference counting when the read returns, before the collector is back on.
@gc_paused()
def read_online(
    online: ViewReader,
    requests: Sequence[FeatureRequest],
    keys_per_request: Sequence[Sequence[EntityKey]],
    entity_rows: list[dict[str, Any]],
    labels: Sequence[Sequence[str]],
    now: int,
) -> OnlineResponse:
    """Read every requested view for every entity row at time ``now``."""
    watermark, blobs_per_request = online.read_views(
        [(request.table, keys) for request, keys in zip(requests, keys_per_request, strict=True)]
    )
    lag = now - watermark.ingested_at
    response = OnlineResponse(entity_rows, [], {}, {}, {})
    for request, blobs, names in zip(requests, blobs_per_request, labels, strict=True):
        plan = request.plan
        sla = plan.view.sla_seconds
        status = STALE if sla is not None and lag > sla * MICROS_PER_SECOND else FRESH
        window_age = max(0, lag) / MICROS_PER_SECOND
        windows = request.windows
        read = request.read_plan.read_at(now)
        states = [None if blob is None else read(decode_frozen(blob), now) for blob in blobs]
        n = len(states)
        all_known = None not in states  # the usual case, with column-wise work below
        if all_known:
            known = cast(list[Values], states)
            value_columns = list(zip(*[s[0] for s in known], strict=True)) if n else []
            time_columns = (
                list(zip(*[s[1] for s in known], strict=True)) if n and plan.latest else []
            )
        for name, position, is_time in zip(
            names, request.positions, request.timestamp_outputs, strict=True
        ):
            ages: list[float | None]
            if position < len(windows) and all_known:
                values = list(value_columns[position]) if n else []
                ages = [window_age] * n
                statuses = (
                    [status] * n
                    if None not in values
                    else [MISSING if v is None else status for v in values]
                )
            elif position < len(windows):
                window = windows[position]
                values = [window.empty_value() if s is None else s[0][position] for s in states]
                ages = [None if s is None else window_age for s in states]
                statuses = [
                    MISSING if s is None or v is None else status
                    for s, v in zip(states, values, strict=True)
                ]
            else:
                latest = position - len(windows)
                if all_known and n:
                    values = list(value_columns[position])
                    times: Sequence[int | None] = time_columns[latest]
                else:
                    values = [None if s is None else s[0][position] for s in states]
                    times = [None if s is None else s[1][latest] for s in states]
                if None not in values and None not in times:
                    ages = [(now - t) / MICROS_PER_SECOND for t in times]  # type: ignore[operator]
                    statuses = [status] * n
                else:
                    ages = [None if t is None else (now - t) / MICROS_PER_SECOND for t in times]
                    statuses = [
                        MISSING if v is None or t is None else status
                        for v, t in zip(values, times, strict=True)
                    ]
            response.features.append(name)
            response.values[name] = [_as_datetime(v) for v in values] if is_time else values
            response.statuses[name] = statuses
            response.ages[name] = ages
    return response


def _as_datetime(value: Any) -> Any:
    if isinstance(value, int):
        return from_micros(value)
    if isinstance(value, list):
        return [from_micros(v) for v in value]
    return value


def feature_request(plan: ViewPlan, names: Sequence[str]) -> FeatureRequest:
    outputs = plan.output_names
    output_types: Mapping[str, FieldType] = {
        **{w.feature.name: w.feature.output_type for w in plan.windows},
        **{f.name: f.output_type for f in plan.latest},
    }
    return FeatureRequest(
        plan,
        list(names),
        [outputs.index(n) for n in names],
        [output_types[n] is FieldType.TIMESTAMP for n in names],
        ReadPlan(plan),
        plan.windows,
        plan.table,
    )
