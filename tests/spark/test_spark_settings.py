"""``batch_engine: {type: spark, ...}`` options: checked when the engine is opened, before
any Spark starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmfs.errors import ConfigError
from crmfs.runtimes.batch.spark_engine import open_spark_engine
from crmfs.runtimes.batch.spark_session import SparkSettings
from crmfs.storage.event_log import EventLog


def test_options_become_spark_settings_and_no_session_starts(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    engine = open_spark_engine(
        {
            "type": "spark",
            "master": "local[4]",
            "shuffle_partitions": 3,
            "driver_memory": "2g",
            "conf": {"spark.sql.adaptive.enabled": False},
        },
        log,
    )
    assert engine._session is None  # started by the first query
    conf = engine.settings.spark_conf()
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.sql.shuffle.partitions"] == "3"
    assert conf["spark.driver.memory"] == "2g"
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"  # a local master stays local
    assert conf["spark.sql.adaptive.enabled"] == "False"
    engine.close()  # nothing to stop
    log.close()


def test_the_defaults() -> None:
    settings = SparkSettings.from_options({})
    assert settings.master == "local[2]"
    assert "spark.sql.shuffle.partitions" not in settings.spark_conf()
    cluster = SparkSettings.from_options({"master": "spark://host:7077"}).spark_conf()
    assert "spark.driver.bindAddress" not in cluster


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"masterr": "local"}, "masterr.*valid: app_name, conf, driver_memory, master"),
        ({"type": "duckdb"}, "not 'spark'"),
        ({"shuffle_partitions": 0}, "shuffle_partitions"),
        ({"shuffle_partitions": True}, "shuffle_partitions"),
        ({"conf": ["spark.x"]}, "conf must be a mapping"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SparkSettings.from_options(options)
