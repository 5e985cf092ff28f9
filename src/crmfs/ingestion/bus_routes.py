"""Which partition of the event bus each raw event goes to.

- Sources resolved by the identity graph (they declare identifiers, or feed a view keyed by
  golden ids or rolled up by a relation, or are a relation's source) go to the ``identity``
  partition: one worker at a time resolves identities, in publish order. A golden id is not
  known before resolution, so these events cannot be spread by it.
- Other sources go to an entity partition by a stable hash (CRC-32) of their *partition key*:
  the key field of their views (the first by name where views differ), else the event id.
  One entity's events of a source stay in one partition, in publish order.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crmfs.definitions import Catalog, EventSource
from crmfs.storage.bus import IDENTITY_PARTITION


@dataclass(frozen=True)
class Route:
    """Where a source's events go: the identity partition, or by ``key`` (a field)."""

    source: str
    key: str | None  # None: the identity partition


def routes(catalog: Catalog) -> dict[str, Route]:
    """The route of every source of ``catalog``."""
    identity_sources = {name for name, source in catalog.sources.items() if source.identifiers}
    identity_sources |= {r.source.name for r in catalog.relations.values()}
    keys: dict[str, set[str]] = {}
    for view in catalog.views.values():
        if view.entity.identity or view.via is not None:
            identity_sources.add(view.source.name)
        else:
            keys.setdefault(view.source.name, set()).add(view.key)
    return {
        name: Route(name, None if name in identity_sources else _key(source, keys.get(name)))
        for name, source in catalog.sources.items()
    }


def _key(source: EventSource, view_keys: set[str] | None) -> str:
    return min(view_keys) if view_keys else source.event_id


def entity_partition(value: object, partitions: int) -> int:
    """The entity partition of a key value (its text's CRC-32, so the same in every
    process and version; a null key goes to partition 0)."""
    if value is None:
        return 0
    return zlib.crc32(str(value).encode("utf-8", "surrogatepass")) % partitions


def split_by_partition(table: pa.Table, route: Route, partitions: int) -> dict[str, pa.Table]:
    """The rows of ``table`` by partition name, each in the table's order."""
    if route.key is None:
        return {IDENTITY_PARTITION: table}
    if route.key not in table.column_names:
        return {"0": table}
    column = table.column(route.key).combine_chunks()
    if column.type != pa.string():
        try:
            column = pc.cast(column, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            column = pa.array([None if v is None else str(v) for v in column.to_pylist()])
    encoded = pc.dictionary_encode(column)
    by_value = np.array(
        [entity_partition(v, partitions) for v in encoded.dictionary.to_pylist()] or [0],
        dtype=np.int64,
    )
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    rows = np.where(codes >= 0, by_value[np.maximum(codes, 0)], 0)
    found = {}
    for partition in np.unique(rows).tolist():
        found[str(partition)] = table.filter(pa.array(rows == partition))
    return found
