"""Point-in-time-correct training sets, computed by the batch runtime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crmfs.definitions import FieldType
from crmfs.errors import EntityDataError
from crmfs.runtimes.batch.engine import PitStrategy
from crmfs.runtimes.batch.port import BatchEngine
from crmfs.storage.arrow_schema import ARROW_TYPES
from crmfs.transform.plan import ViewPlan

TIMESTAMP_COLUMN = "event_timestamp"
_RESERVED = ("__row", "__key", "__t")


@dataclass(frozen=True)
class TrainingSet:
    """A training set and what it was computed from (reproducible by its feature versions)."""

    table: pa.Table
    feature_versions: dict[str, int]
    as_served: bool

    def to_arrow(self) -> pa.Table:
        return self.table

    def to_df(self) -> Any:
        """A pandas DataFrame (Feast's name for it)."""
        return self.table.to_pandas()

    to_pandas = to_df


def entity_table(entity_df: Any) -> pa.Table:
    """The entity dataframe as Arrow, checked: a tz-aware ``event_timestamp`` without nulls."""
    if isinstance(entity_df, pa.Table):
        table = entity_df
    elif type(entity_df).__module__.startswith("pandas"):
        table = pa.Table.from_pandas(entity_df, preserve_index=False)
    else:
        raise EntityDataError("entity_df must be a pandas DataFrame or an Arrow table")
    if TIMESTAMP_COLUMN not in table.column_names:
        raise EntityDataError(f"entity_df has no {TIMESTAMP_COLUMN!r} column")
    kind = table.schema.field(TIMESTAMP_COLUMN).type
    if not pa.types.is_timestamp(kind):
        raise EntityDataError(f"entity_df.{TIMESTAMP_COLUMN} must be timestamps, not {kind}")
    if kind.tz is None:
        raise EntityDataError(
            f"entity_df.{TIMESTAMP_COLUMN} is timezone-naive; localize it, e.g. "
            "df['event_timestamp'] = df['event_timestamp'].dt.tz_localize('UTC')"
        )
    if table.column(TIMESTAMP_COLUMN).null_count:
        raise EntityDataError(f"entity_df.{TIMESTAMP_COLUMN} has nulls")
    for name in _RESERVED:
        if name in table.column_names:
            raise EntityDataError(f"entity_df may not have a column named {name!r}")
    return table


def _keys_of_view_type(plan: ViewPlan, keys: pa.ChunkedArray) -> pa.ChunkedArray:
    """``keys`` in the type of the view's key field, so they compare and hash as the events'
    keys do (pandas turns an int column with gaps into floats, for one)."""
    name = plan.view.entity.join_key
    kind = ARROW_TYPES[plan.view.entity.dtype]  # the key field's type (golden ids: strings)
    if keys.type == kind:
        return keys
    try:
        return pc.cast(keys, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise EntityDataError(
            f"entity_df.{name} holds {keys.type} values that are not {kind} keys of feature "
            f"view {plan.view.name!r}: {exc}"
        ) from exc


def historical_features(
    engine: BatchEngine,
    entity_df: Any,
    requests: Sequence[tuple[ViewPlan, list[str]]],
    as_served: bool,
    full_feature_names: bool,
    strategy: PitStrategy = "auto",
    mappings: Mapping[str, pa.Table] | None = None,
) -> TrainingSet:
    """Each entity row's features as of its ``event_timestamp``; views keyed by golden ids
    or rolled up by a relation read events by their mapping (``mappings`` by view name: the
    intervals on the time axis the rows ask for)."""
    table = entity_table(entity_df)
    micros = pc.cast(
        pc.cast(table.column(TIMESTAMP_COLUMN), pa.timestamp("us", tz="UTC")), pa.int64()
    )
    rows = pa.array(np.arange(table.num_rows, dtype=np.int64))
    out = table
    names_taken = set(table.column_names)
    for plan, names in requests:
        join_key = plan.view.entity.join_key
        if join_key not in table.column_names:
            raise EntityDataError(
                f"entity_df has no {join_key!r} column, needed by feature view {plan.view.name!r}"
            )
        keys = _keys_of_view_type(plan, table.column(join_key))
        entity_rows = pa.table({"__row": rows, "__key": keys, "__t": micros})
        mapping = (mappings or {}).get(plan.view.name)
        result = engine.point_in_time(plan, entity_rows, as_served, strategy, mapping)
        types = {w.feature.name: w.feature.output_type for w in plan.windows}
        types.update({f.name: f.output_type for f in plan.latest})
        for name in names:
            column = result.column(name)
            if types[name] is FieldType.TIMESTAMP:
                column = _to_timestamps(column)
            label = f"{plan.view.name}__{name}" if full_feature_names else name
            if label in names_taken:
                raise EntityDataError(
                    f"column {label!r} appears twice; pass full_feature_names=True"
                )
            names_taken.add(label)
            out = out.append_column(label, column)
    versions = {plan.view.name: plan.version for plan, _ in requests}
    return TrainingSet(out, versions, as_served)


def _to_timestamps(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_list(column.type):
        return column.cast(pa.list_(pa.timestamp("us", tz="UTC")))
    return column.cast(pa.timestamp("us", tz="UTC"))
