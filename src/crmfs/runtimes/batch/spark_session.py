"""The Spark side of the batch runtime: settings, the session, and the log as Spark reads it.

pyspark is imported here, inside functions, so ``import crmfs`` never loads it; without it,
the first use raises :class:`~crmfs.errors.MissingExtra` naming the ``spark`` extra.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from crmfs.definitions import EventSource
from crmfs.errors import ConfigError, MissingExtra
from crmfs.storage.arrow_schema import log_schema
from crmfs.storage.event_log import EventLog

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Spark SQL's names of the Arrow types a log segment holds (``storage.arrow_schema``).
_SPARK_TYPES = {
    pa.string(): "STRING",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.timestamp("us", tz="UTC"): "TIMESTAMP",
}


@dataclass(frozen=True)
class SparkSettings:
    """How the engine's SparkSession is made (``batch_engine:`` in ``crmfs.yaml``).

    ``shuffle_partitions=None`` leaves Spark's own (adaptive execution coalesces them);
    ``conf`` passes any other Spark setting through as is.
    """

    master: str = "local[2]"
    app_name: str = "crmfs"
    shuffle_partitions: int | None = None
    driver_memory: str | None = None
    conf: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SparkSettings:
        """Settings from ``batch_engine:`` options; unknown keys are refused by name."""
        known = {"type", "master", "app_name", "shuffle_partitions", "driver_memory", "conf"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"batch_engine (spark): unknown option(s) {', '.join(unknown)};"
                f" valid: {', '.join(sorted(known))}"
            )
        if options.get("type", "spark") != "spark":
            raise ConfigError(f"batch_engine type {options['type']!r} is not 'spark'")
        partitions = options.get("shuffle_partitions")
        if partitions is not None and (
            isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1
        ):
            raise ConfigError(
                f"batch_engine.shuffle_partitions must be a positive integer, not {partitions!r}"
            )
        conf = options.get("conf") or {}
        if not isinstance(conf, Mapping):
            raise ConfigError(f"batch_engine.conf must be a mapping, not {conf!r}")
        return cls(
            master=str(options.get("master", cls.master)),
            app_name=str(options.get("app_name", cls.app_name)),
            shuffle_partitions=partitions,
            driver_memory=None
            if options.get("driver_memory") is None
            else str(options["driver_memory"]),
            conf={str(k): str(v) for k, v in conf.items()},
        )

    def spark_conf(self) -> dict[str, str]:
        """Every setting the session is built with: UTC, no UI, quiet, then ``conf``.

        A local master binds the driver to the loopback address: nothing outside the
        machine needs to reach it.
        """
        settings = {
            "spark.sql.session.timeZone": "UTC",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
        }
        if self.master.startswith("local"):
            settings["spark.driver.host"] = "127.0.0.1"
            settings["spark.driver.bindAddress"] = "127.0.0.1"
        if self.shuffle_partitions is not None:
            settings["spark.sql.shuffle.partitions"] = str(self.shuffle_partitions)
        if self.driver_memory is not None:
            settings["spark.driver.memory"] = self.driver_memory
        settings.update(self.conf)
        return settings


@contextmanager
def quiet_pyspark() -> Iterator[None]:
    """pyspark warns that it does not yet support pandas 3; crmfs hands it Arrow tables, so
    the warning says nothing about crmfs's use, and pytest would make it an error."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
        )
        yield


def start_session(settings: SparkSettings) -> SparkSession:
    """A SparkSession with ``settings`` (an active one is reused, its runtime settings set)."""
    try:
        with quiet_pyspark():
            from pyspark.sql import SparkSession
    except ImportError as exc:
        raise MissingExtra("pyspark", "spark") from exc
    if settings.master.startswith("local"):
        # Else Spark looks up the machine's address before reading spark.driver.host.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master(settings.master).appName(settings.app_name)
    for key, value in settings.spark_conf().items():
        builder = builder.config(key, value)
    with quiet_pyspark():
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def spark_schema(source: EventSource) -> str:
    """The source's log segments as a Spark DDL schema."""
    return ", ".join(f"`{f.name}` {_SPARK_TYPES[f.type]}" for f in log_schema(source))


def log_events(session: SparkSession, log: EventLog, source: EventSource) -> DataFrame:
    """The source's events: its log segments, the same Parquet files DuckDB reads.

    The schema is the source's, given rather than inferred: a segment written before a field
    was added reads that field as NULL, as DuckDB's ``union_by_name`` does.
    """
    files = [str(f) for f in log.segment_files(source.name)]
    schema = spark_schema(source)
    if not files:
        return session.createDataFrame([], schema=schema)
    return session.read.schema(schema).parquet(*files)
