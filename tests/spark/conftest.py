"""One SparkSession for every Spark test: local[2], two shuffle partitions, no UI.

Starting Spark takes seconds and its JVM stays up, so the session is made once per test run
and handed to each engine (``SparkEngine(log, session=...)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spark: runs a real Spark in local mode")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "spark_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.spark)


@pytest.fixture(scope="session")
def spark_session() -> Iterator[SparkSession]:
    pytest.importorskip("pyspark", reason="the spark extra is not installed")
    from crmfs.runtimes.batch.spark_session import SparkSettings, start_session

    session = start_session(SparkSettings(master="local[2]", shuffle_partitions=2))
    yield session
    session.stop()
