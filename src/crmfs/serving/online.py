"""Online reads: values computed from tiles at read time, each with its age and status.

Status rules (docs/semantics.md, "Freshness"):

- ``missing``: no value (the entity is unknown to the view, the window has no value, or
  a latest value is older than the view's TTL);
- ``stale``: the online store has not heard from the log for longer than the view's
  freshness SLA (the pipeline may be behind), so the value may be outdated;
- ``fresh``: otherwise.

``age`` (seconds) is how old the information is: for latest values, the time since the
event; for window aggregates, the time since the online store last applied the log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crmfs.definitions import FieldType
from crmfs.runtimes.streaming.state import decode, read_values
from crmfs.storage.ports import EntityKey, OnlineStore
from crmfs.timestamps import MICROS_PER_SECOND, from_micros
from crmfs.transform.plan import ViewPlan

FRESH, STALE, MISSING = "fresh", "stale", "missing"


@dataclass(frozen=True)
class FeatureRequest:
    """The features asked of one view, as positions in its plan's outputs."""

    plan: ViewPlan
    names: list[str]
    positions: list[int]
    timestamp_outputs: list[bool]


@dataclass
class OnlineResponse:
    """Columnar answer: for each feature, a value, a status and an age per entity row."""

    entity_rows: list[dict[str, Any]]
    features: list[str]
    values: dict[str, list[Any]]
    statuses: dict[str, list[str]]
    ages: dict[str, list[float | None]]

    def to_dict(self) -> dict[str, list[Any]]:
        """Feast-style columns: entity keys, then one column per feature."""
        out: dict[str, list[Any]] = {}
        for key in self.entity_rows[0] if self.entity_rows else {}:
            out[key] = [row[key] for row in self.entity_rows]
        out.update(self.values)
        return out

    def rows(self) -> list[dict[str, dict[str, Any]]]:
        """One dict per entity row: feature → {value, status, age_s}."""
        return [
            {
                f: {
                    "value": self.values[f][i],
                    "status": self.statuses[f][i],
                    "age_s": self.ages[f][i],
                }
                for f in self.features
            }
            for i in range(len(self.entity_rows))
        ]


def read_online(
    online: OnlineStore,
    requests: Sequence[FeatureRequest],
    keys_per_request: Sequence[Sequence[EntityKey]],
    entity_rows: list[dict[str, Any]],
    labels: Sequence[Sequence[str]],
    now: int,
) -> OnlineResponse:
    """Read every requested view for every entity row at time ``now``."""
    watermark_at = online.watermark().ingested_at
    lag = now - watermark_at
    response = OnlineResponse(entity_rows, [], {}, {}, {})
    for request, keys, names in zip(requests, keys_per_request, labels, strict=True):
        plan = request.plan
        sla = plan.view.sla_seconds
        behind = sla is not None and lag > sla * MICROS_PER_SECOND
        window_age = max(0, lag) / MICROS_PER_SECOND
        n_windows = len(plan.windows)
        columns: list[list[Any]] = [[] for _ in names]
        statuses: list[list[str]] = [[] for _ in names]
        ages: list[list[float | None]] = [[] for _ in names]
        for blob in online.read(plan.table, keys):
            if blob is None:
                values: list[Any] = [None] * len(plan.output_names)
                times: list[int | None] = [None] * len(plan.latest)
                known = False
            else:
                values, times = read_values(plan, decode(blob), now)
                known = True
            for j, position in enumerate(request.positions):
                value = values[position]
                if position < n_windows:
                    age: float | None = window_age if known else None
                    if not known:
                        value = _empty_window_value(plan, position)
                else:
                    event_time = times[position - n_windows]
                    age = None if event_time is None else (now - event_time) / MICROS_PER_SECOND
                if request.timestamp_outputs[j]:
                    value = _as_datetime(value)
                columns[j].append(value)
                ages[j].append(age)
                if not known or value is None or age is None:
                    statuses[j].append(MISSING)
                else:
                    statuses[j].append(STALE if behind else FRESH)
        for j, name in enumerate(names):
            response.features.append(name)
            response.values[name] = columns[j]
            response.statuses[name] = statuses[j]
            response.ages[name] = ages[j]
    return response


def _empty_window_value(plan: ViewPlan, position: int) -> Any:
    aggregator = plan.windows[position].aggregator
    return aggregator.finalize(aggregator.init())


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
    )
