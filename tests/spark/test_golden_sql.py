"""Golden SQL per dialect: the batch plan's queries as DuckDB and Spark get them.

Each case is written to ``tests/spark/golden/<case>.<dialect>.sql``; a change to the
generated SQL fails here until the snapshots are updated on purpose::

    CRMFS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/spark/test_golden_sql.py

and the diff reviewed with the commit. No Spark runs here (the parity suite runs the SQL).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from crmfs.definitions import GOLDEN_ID
from crmfs.runtimes.batch import identity_keys, sql
from crmfs.runtimes.batch.spark_sql import UntranslatedSQL, spark_sql
from crmfs.transform.plan import plan_view
from tests.spark.views import ACTIVITY, LATEST_ONLY, PLAIN

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("CRMFS_UPDATE_GOLDEN") == "1"
activity, plain, latest_only = plan_view(ACTIVITY), plan_view(PLAIN), plan_view(LATEST_ONLY)
START, END, NOW, UPTO = -(2**62), 2**62, 1_772_323_200_000_000, 1_000

CASES: dict[str, Callable[[], str]] = {
    "pit_activity": lambda: sql.point_in_time_sql(activity, as_served=False),
    "pit_activity_as_served": lambda: sql.point_in_time_sql(activity, as_served=True),
    "pit_plain": lambda: sql.point_in_time_sql(plain, as_served=False),
    "pit_latest_only": lambda: sql.point_in_time_sql(latest_only, as_served=False),
    **{
        f"tiles_activity_{g}": (
            lambda g=g: sql.tiles_sql(
                activity, g, activity.hop_groups[g].first_live_tile(NOW), START, END, UPTO
            )
        )
        for g in range(len(activity.hop_groups))
    },
    "latest_activity": lambda: sql.latest_sql(activity, START, END, UPTO),
    "entity_keys_plain": lambda: sql.entity_keys_sql(plain, START, END, UPTO),
    "keyed_events_golden_id": lambda: identity_keys.keyed_events_sql("__raw_events", GOLDEN_ID),
    "keyed_events_relation": lambda: identity_keys.keyed_events_sql("__raw_events", "account_id"),
}
DIALECTS: dict[str, Callable[[str], str]] = {"duckdb": lambda q: q, "spark": spark_sql}


@pytest.mark.parametrize("dialect", list(DIALECTS))
@pytest.mark.parametrize("case", list(CASES))
def test_generated_sql_matches_its_snapshot(case: str, dialect: str) -> None:
    generated = DIALECTS[dialect](CASES[case]()).strip() + "\n"
    path = GOLDEN / f"{case}.{dialect}.sql"
    if UPDATE:
        path.write_text(generated)
    assert path.exists(), f"no snapshot {path.name}; write it with CRMFS_UPDATE_GOLDEN=1"
    assert generated == path.read_text(), (
        f"{path.name} changed; if intended, rerun with CRMFS_UPDATE_GOLDEN=1 and review the diff"
    )


def test_no_snapshot_is_left_without_a_case() -> None:
    expected = {f"{case}.{dialect}.sql" for case in CASES for dialect in DIALECTS}
    assert {p.name for p in GOLDEN.glob("*.sql")} == expected


@pytest.mark.parametrize(
    ("duckdb", "spark"),
    [
        # DuckDB's arg_max / max_by skip a NULL value; Spark's max_by keeps it.
        ("SELECT arg_max(x, o) FROM t", "MAX_BY(x, IF(x IS NULL, NULL, o))"),
        ("SELECT max_by(x, o, 3) FROM t", "MAX_BY(x, IF(x IS NULL, NULL, o), 3)"),
        ("SELECT arg_max(struct_pack(a := x), o) FROM t", "MAX_BY(STRUCT(x AS a), o)"),
        ("SELECT arg_max_null(x, o) FROM t", "MAX_BY(x, o)"),
        ("SELECT CAST(x AS HUGEINT) FROM t", "CAST(x AS DECIMAL(38, 0))"),
        ("SELECT epoch_us(ts) FROM t", "UNIX_MICROS(ts)"),
        (
            "SELECT len(list_distinct(list(x) FILTER (WHERE x IS NOT NULL))) FROM t",
            "SIZE(ARRAY_DISTINCT(COLLECT_LIST(x) FILTER(WHERE NOT x IS NULL)))",
        ),
        ("SELECT e.* REPLACE (k AS c) FROM e", "e.* EXCEPT (c), k AS c"),
        ("SELECT 'it''s \\ here'", "'it\\'s \\\\ here'"),
        ("SELECT 7 // 2, -7 % 3", "7 DIV 2, -7 % 3"),
    ],
)
def test_each_rule_translates_to_the_same_meaning(duckdb: str, spark: str) -> None:
    assert spark in " ".join(spark_sql(duckdb).split())


@pytest.mark.parametrize(
    "duckdb",
    [
        "SELECT list(x) FROM t",  # keeps NULLs in DuckDB, not in Spark's collect_list
        "SELECT list(x) FILTER (WHERE y IS NOT NULL) FROM t",
        "SELECT list_distinct(l) FROM t",  # drops NULL in DuckDB, keeps one in Spark
        "SELECT len(s) FROM t",  # a string's length: never in the plan
        "SELECT list_sum(l) FROM t",
        "SELECT CAST(x AS DATE) FROM t",
    ],
)
def test_constructs_without_a_checked_translation_are_refused(duckdb: str) -> None:
    with pytest.raises(UntranslatedSQL):
        spark_sql(duckdb)
