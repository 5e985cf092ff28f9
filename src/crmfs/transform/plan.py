"""The compiled form of a feature view that both runtimes execute.

A ``ViewPlan`` groups window features by hop, because features sharing a hop share
tiles: tile ``k`` of hop ``h`` holds the events with ``k*h < event_time <= (k+1)*h``
(times in microseconds). A read at ``t`` of a window ``w`` covers the tiles from
``floor((t - w) / h)`` to ``(t - 1) // h``, which is exactly the normative window
``L < event_time <= t`` with ``L = floor((t - w) / h) * h``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crmfs.definitions import FeatureView, FieldType, LatestFeature, WindowFeature
from crmfs.timestamps import MICROS_PER_SECOND
from crmfs.transform.aggregators import Aggregator, aggregator_for


def online_table(view: str, version: int) -> str:
    """The online table of a view at one version (also for views no longer defined)."""
    return f"{view}__v{version}"


def window_lower_bound(t: int, window: int, hop: int) -> int:
    """``L`` of the normative window at read time ``t`` (all in microseconds)."""
    return ((t - window) // hop) * hop


def tile_of(event_time: int, hop: int) -> int:
    """Index of the tile holding an event: ``k*hop < event_time <= (k+1)*hop``."""
    return (event_time - 1) // hop


@dataclass(frozen=True)
class PlannedWindow:
    """A window feature with its aggregator and its position in the tile."""

    feature: WindowFeature
    aggregator: Aggregator
    slot: int
    window_us: int
    hop_us: int

    def empty_value(self) -> Any:
        """The feature's value over a window without events (0 for a count, [] for last_n)."""
        return self.aggregator.finalize(self.aggregator.init())


@dataclass(frozen=True)
class HopGroup:
    """Window features sharing one hop, hence one set of tiles."""

    hop_us: int
    features: tuple[PlannedWindow, ...]
    horizon_us: int

    def first_live_tile(self, now: int) -> int:
        """Tiles before this one can no longer be read at ``now`` or later."""
        return (now - self.horizon_us) // self.hop_us


@dataclass(frozen=True)
class ViewPlan:
    """A feature view at one version, ready for a runtime."""

    view: FeatureView
    version: int
    hop_groups: tuple[HopGroup, ...]
    latest: tuple[LatestFeature, ...]
    ttl_us: int | None

    @property
    def table(self) -> str:
        """The online table holding this version's state."""
        return online_table(self.view.name, self.version)

    @property
    def windows(self) -> list[PlannedWindow]:
        return [w for group in self.hop_groups for w in group.features]

    @property
    def output_names(self) -> list[str]:
        """Feature names in the order the runtimes produce values."""
        return [w.feature.name for w in self.windows] + [f.name for f in self.latest]

    def value_fields(self) -> list[str]:
        """Source fields the features read (besides key and time)."""
        fields = {w.feature.field for w in self.windows if w.feature.field}
        fields.update(f.field for f in self.latest)
        if self.view.filter is not None:
            fields.update(self.view.filter.columns())
        return sorted(f for f in fields if f is not None)


def plan_view(view: FeatureView, version: int = 1) -> ViewPlan:
    """Compile a feature view into its plan."""
    schema = view.source.fields
    by_hop: dict[int, list[WindowFeature]] = {}
    for feature in view.window_features:
        by_hop.setdefault(feature.hop, []).append(feature)
    groups = []
    for hop in sorted(by_hop):
        planned = tuple(
            PlannedWindow(
                feature=f,
                aggregator=aggregator_for(
                    f.function,
                    f.n,
                    float_field=f.field is not None and schema[f.field] is FieldType.FLOAT,
                ),
                slot=slot,
                window_us=f.window * MICROS_PER_SECOND,
                hop_us=hop * MICROS_PER_SECOND,
            )
            for slot, f in enumerate(by_hop[hop])
        )
        horizon = max(f.window for f in by_hop[hop]) * MICROS_PER_SECOND
        groups.append(HopGroup(hop * MICROS_PER_SECOND, planned, horizon))
    ttl = view.ttl_seconds
    return ViewPlan(
        view=view,
        version=version,
        hop_groups=tuple(groups),
        latest=view.latest_features,
        ttl_us=None if ttl is None else ttl * MICROS_PER_SECOND,
    )
