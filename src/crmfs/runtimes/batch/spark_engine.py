"""The Spark batch engine: the DuckDB engine's range-join plan, run by Spark SQL.

It answers the same calls as :class:`~crmfs.runtimes.batch.engine.DuckDBEngine`
(``point_in_time`` for training sets, ``backfill`` for online states) over the same event log
(the Parquet segments DuckDB reads), with the same SQL: ``crmfs.runtimes.batch.sql`` writes
each query once and ``spark_sql`` translates it. Of the DuckDB engine's three point-in-time
plans Spark runs the range join, the one plan that is SQL alone and answers ``as_served``
too: the list plan builds its lists in Arrow and slices them with DuckDB's list functions,
and the sorted plan needs window frames whose bounds differ per row, which Spark lacks.

Views keyed by golden ids or relations are supported: the mapping's keys (a row per record
and epoch) and the entity rows' epoch keys are computed on the driver by the same
``identity_keys`` code DuckDB uses, over the mapping and the rows, which are small and
already in the driver's memory; Spark joins the events to those keys.

Example::

    engine = open_spark_engine({"master": "local[2]"}, store.log)
    training = historical_features(engine, entity_df, requests, as_served=False, ...)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from crmfs.definitions import FieldType, Function
from crmfs.errors import StorageError
from crmfs.runtimes.batch import identity_keys, sql, state_blobs
from crmfs.runtimes.batch.engine import IdentityMapping, PitStrategy, mapping_for
from crmfs.runtimes.batch.spark_session import (
    SparkSettings,
    log_events,
    quiet_pyspark,
    start_session,
)
from crmfs.runtimes.batch.spark_sql import spark_sql
from crmfs.storage.arrow_schema import ARROW_TYPES
from crmfs.storage.event_log import EventLog
from crmfs.transform.plan import ViewPlan

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_VIEWS = ("events", "entity_rows", "__raw_events", "__id_keys")


class SparkEngine:
    """Point-in-time training sets and tile backfills, computed in Spark SQL.

    The session is started on first use (``settings``), or given (``session``: one the
    caller owns and stops). Calls run one at a time: they share the session's temp views.
    """

    def __init__(
        self,
        log: EventLog,
        settings: SparkSettings | None = None,
        session: SparkSession | None = None,
    ) -> None:
        self.log = log
        self.settings = settings or SparkSettings()
        self._session = session
        self._owns_session = session is None
        self._lock = threading.Lock()

    @property
    def session(self) -> SparkSession:
        if self._session is None:
            # A session already running in this process is shared, not this engine's to stop.
            try:
                from pyspark.sql import SparkSession
            except ImportError:  # start_session says which extra to install
                pass
            else:
                if SparkSession.getActiveSession() is not None:
                    self._owns_session = False
            self._session = start_session(self.settings)
        return self._session

    def point_in_time(
        self,
        plan: ViewPlan,
        entity_rows: pa.Table,
        as_served: bool,
        strategy: PitStrategy = "auto",
        identity: pa.Table | None = None,
    ) -> pa.Table:
        """Feature columns (``plan.output_names``) for ``entity_rows(__row, __key, __t)``, in
        row order, typed as the DuckDB engine types them.

        Views keyed by golden ids or a relation need ``identity``, as in DuckDB.
        ``strategy`` may only be ``auto`` or ``range_join``: Spark runs the range join.
        """
        if strategy not in ("auto", "range_join"):
            raise ValueError(f"the Spark engine runs the range_join plan, not {strategy!r}")
        mapping = mapping_for(plan, identity, epochs=True)
        with self._views(plan, mapping, entity_rows) as session:
            query = spark_sql(sql.point_in_time_sql(plan, as_served))
            table = session.sql(query).toArrow()
        return _typed(plan, _in_row_order(table, entity_rows.num_rows))

    def backfill(
        self,
        plan: ViewPlan,
        start_us: int,
        end_us: int,
        now: int,
        upto_seq: int,
        identity: pa.Table | None = None,
    ) -> pa.Table:
        """Online state per entity (``key``, ``state``) from the events with
        ``start <= event_time < end`` and ``seq <= upto_seq``, as ``DuckDBEngine.backfill``
        builds them (the same queries, encoded by the same ``state_blobs``)."""
        mapping = mapping_for(plan, identity, epochs=False)
        with self._views(plan, mapping, None) as session:

            def run(query: str) -> pa.Table:
                return session.sql(spark_sql(query)).toArrow()

            groups = [
                state_blobs.tile_maps(
                    run(
                        sql.tiles_sql(
                            plan, g, group.first_live_tile(now), start_us, end_us, upto_seq
                        )
                    )
                )
                for g, group in enumerate(plan.hop_groups)
            ]
            latest = None
            if plan.latest:
                latest = state_blobs.latest_entries(
                    run(sql.latest_sql(plan, start_us, end_us, upto_seq))
                )
                keys = latest[0]
            else:  # without latest values, entities whose tiles all aged out are still known
                keys = run(sql.entity_keys_sql(plan, start_us, end_us, upto_seq)).column(0)
                keys = keys.combine_chunks()
        keys, blobs = state_blobs.states(groups, latest, len(plan.latest), keys)
        return pa.table({"key": keys, "state": blobs})

    def close(self) -> None:
        """Stop the session, if this engine started it."""
        if self._owns_session and self._session is not None:
            self._session.stop()
            self._session = None

    @contextmanager
    def _views(
        self, plan: ViewPlan, mapping: IdentityMapping | None, rows: pa.Table | None
    ) -> Iterator[SparkSession]:
        """A session where ``events`` is the view's source log (keyed by ``mapping``'s keys if
        given) and ``entity_rows`` is ``rows`` (with epoch keys under an epoch mapping)."""
        from py4j.protocol import Py4JError  # type: ignore[import-untyped]  # py4j ships no types
        from pyspark.errors import PySparkException

        with self._lock, quiet_pyspark():
            session = self.session
            try:
                raw = log_events(session, self.log, plan.view.source)
                if mapping is None:
                    raw.createOrReplaceTempView("events")
                else:
                    keys, rows = _mapping_keys(mapping, rows)
                    raw.createOrReplaceTempView("__raw_events")
                    session.createDataFrame(keys).createOrReplaceTempView("__id_keys")
                    keyed = identity_keys.keyed_events_sql("__raw_events", mapping.key_column)
                    session.sql(spark_sql(keyed)).createOrReplaceTempView("events")
                if rows is not None:
                    session.createDataFrame(rows).createOrReplaceTempView("entity_rows")
                yield session
            except (PySparkException, Py4JError) as exc:
                raise StorageError(
                    f"Spark batch query over {plan.view.source.name!r} failed: {exc}"
                ) from exc
            finally:
                for view in _VIEWS:
                    session.catalog.dropTempView(view)


def open_spark_engine(
    options: Mapping[str, Any], log: EventLog, session: SparkSession | None = None
) -> SparkEngine:
    """The engine ``batch_engine: {type: spark, ...}`` in ``crmfs.yaml`` asks for.

    Options: ``master`` (default ``local[2]``), ``app_name``, ``shuffle_partitions``,
    ``driver_memory``, ``conf`` (any other Spark setting). Unknown options raise
    :class:`~crmfs.errors.ConfigError`; no session starts until the first query.
    """
    return SparkEngine(log, SparkSettings.from_options(options), session)


def _mapping_keys(
    mapping: IdentityMapping, rows: pa.Table | None
) -> tuple[pa.Table, pa.Table | None]:
    """``(record_id, key)`` per record and key of the mapping, and the rows with their epoch
    keys: ``identity_keys`` run by DuckDB over the driver's small tables."""
    with duckdb.connect(":memory:") as db:
        if mapping.epochs:
            identity_keys.register_epochs(db, mapping.intervals)
            if rows is not None:
                rows = identity_keys.epoch_rows(db, rows)
        else:
            identity_keys.register_current(db, mapping.intervals)
        keys = db.sql(
            "SELECT CAST(record_id AS VARCHAR) AS record_id, CAST(key AS VARCHAR) AS key"
            " FROM __id_keys"
        ).to_arrow_table()
    return keys, rows


def _in_row_order(table: pa.Table, rows: int) -> pa.Table:
    """Spark's result (``__row`` a permutation of 0..rows-1) in row order."""
    order = np.empty(rows, dtype=np.int64)
    order[table.column("__row").to_numpy()] = np.arange(rows, dtype=np.int64)
    return table.take(pa.array(order))


def _typed(plan: ViewPlan, table: pa.Table) -> pa.Table:
    """The feature columns in the Arrow types the DuckDB engine gives them."""
    types = feature_types(plan)
    return pa.table(
        {name: table.column(name).cast(kind) for name, kind in types.items()},
        schema=pa.schema(list(types.items())),
    )


def feature_types(plan: ViewPlan) -> dict[str, pa.DataType]:
    """Each feature's Arrow type in a point-in-time result (timestamps as microseconds)."""

    def value(field: str) -> pa.DataType:
        kind = plan.view.source.field_type(field)
        return pa.int64() if kind is FieldType.TIMESTAMP else ARROW_TYPES[kind]

    types: dict[str, pa.DataType] = {}
    for w in plan.windows:
        f = w.feature
        match f.function:
            case Function.COUNT | Function.COUNT_DISTINCT:
                kind = pa.int64()
            case Function.SUM:
                kind = pa.int64() if f.output_type is FieldType.INT else pa.float64()
            case Function.MEAN:
                kind = pa.float64()
            case Function.LAST_N:
                assert f.field is not None
                kind = pa.list_(value(f.field))
            case _:
                assert f.field is not None
                kind = value(f.field)
        types[f.name] = kind
    types.update({f.name: value(f.field) for f in plan.latest})
    return types
