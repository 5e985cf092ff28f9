"""crmfs.yaml and the definitions module: every mistake names the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmfs.errors import ConfigError, DefinitionError
from crmfs.store import FeatureStore

DEFINITIONS = """\
from crmfs import Aggregation, Entity, EventSource, FeatureView

customer = Entity("customer", join_key="customer_id")
clicks = EventSource(
    "clicks", schema={"id": "string", "ts": "timestamp", "customer_id": "string"},
    event_id="id", event_time="ts",
)
activity = FeatureView("activity", customer, clicks, [Aggregation("clicks", "count", ["1h"])])
"""


def _project(folder: Path, yaml_text: str, definitions: str | None = DEFINITIONS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "crmfs.yaml").write_text(yaml_text)
    if definitions is not None:
        (folder / "definitions.py").write_text(definitions)
    return folder


def _error(folder: Path) -> str:
    with pytest.raises(ConfigError) as info:
        FeatureStore(folder)
    return str(info.value)


def test_a_valid_project_loads(tmp_path: Path) -> None:
    yaml_text = "project: shop\nbatch_engine: {type: duckdb, threads: 2, memory_limit: 1GB}\n"
    store = FeatureStore(_project(tmp_path, yaml_text))
    assert store.config.project == "shop"
    assert store.config.batch_engine == {"type": "duckdb", "threads": 2, "memory_limit": "1GB"}
    assert set(store.catalog.views) == {"activity"}
    store.close()


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("project: [shop\n", ["crmfs.yaml", "not valid YAML", "line 1"]),
        ("- project\n- shop\n", ["crmfs.yaml", "expected a mapping", "got list"]),
        ("definitions: defs.py\n", ["crmfs.yaml", "'project' must be a non-empty string"]),
        ("project: shop\nonline_stor: {type: sqlite}\n", ["unknown keys ['online_stor']"]),
        (
            "project: shop\nonline_store: {type: redis}\n",
            ["crmfs.yaml", "online_store.type 'redis' is unknown", "valid types: sqlite"],
        ),
        (
            "project: shop\nregistry: {type: postgres}\n",
            ["registry.type 'postgres' is unknown", "valid types: sqlite"],
        ),
        (
            "project: shop\nbatch_engine: spark\n",
            ["'batch_engine' must be a mapping with a 'type'", "duckdb", "got 'spark'"],
        ),
        (
            "project: shop\nbatch_engine: {type: duckdb, thread: 4}\n",
            ["batch_engine.thread is not an option of 'duckdb'", "threads, memory_limit"],
        ),
        (
            "project: shop\nbatch_engine: {type: duckdb, threads: many}\n",
            ["batch_engine.threads 'many' must be a positive integer"],
        ),
        (
            'project: shop\nbatch_engine: {type: duckdb, memory_limit: "1GB\'; DROP"}\n',
            ["batch_engine.memory_limit", "must be a size such as '4GB'"],
        ),
        (
            "project: shop\nonline_store: {type: sqlite, path: x.db}\n",
            ["online_store.path is not an option of 'sqlite'; its options: parallel_fold"],
        ),
        (
            "project: shop\nonline_store: {type: sqlite, parallel_fold: maybe}\n",
            ["online_store.parallel_fold 'maybe' must be true or false"],
        ),
        ("project: shop\ndata_dir: 5\n", ["'data_dir' must be a path", "got 5"]),
        (
            "project: shop\nidentity: {type: sqlite, default_region: usa}\n",
            ["identity.default_region 'usa' must be a two-letter region code"],
        ),
        (
            "project: shop\nidentity: {type: sqlite, link_threshold: 1.5}\n",
            ["identity.link_threshold 1.5 must be a probability between 0 and 1"],
        ),
        (
            "project: shop\nidentity: {type: sqlite, link_threshold: 0.2, no_link_floor: 0.4}\n",
            ["crmfs.yaml identity: floor must be between 0 and the threshold"],
        ),
    ],
)
def test_bad_project_file_names_the_key_and_the_problem(
    tmp_path: Path, yaml_text: str, expected: list[str]
) -> None:
    message = _error(_project(tmp_path, yaml_text))
    for part in expected:
        assert part in message, message


def test_missing_project_file_says_how_to_create_one(tmp_path: Path) -> None:
    message = _error(tmp_path)
    assert "no crmfs.yaml in" in message
    assert "crmfs init" in message


def test_missing_definitions_module_names_the_file_and_the_key(tmp_path: Path) -> None:
    project = _project(tmp_path, "project: shop\ndefinitions: features/defs.py\n")
    message = _error(project)
    assert "crmfs.yaml 'definitions'" in message
    assert "definitions module not found" in message
    assert str(project / "features" / "defs.py") in message


def test_definitions_that_are_not_a_python_file(tmp_path: Path) -> None:
    project = _project(tmp_path, "project: shop\ndefinitions: defs.yaml\n")
    (project / "defs.yaml").write_text("a: 1\n")
    assert "defs.yaml is not a Python file (.py)" in _error(project)


def test_definitions_that_fail_to_import_name_the_module(tmp_path: Path) -> None:
    project = _project(tmp_path, "project: shop\n", definitions="import nowhere_to_be_found\n")
    with pytest.raises(DefinitionError, match=r"definitions\.py: field 'module': failed to import"):
        FeatureStore(project)


def test_identity_settings_reach_the_identity_service(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        "project: shop\nidentity: {type: sqlite, default_region: GB, link_threshold: 0.9,"
        " review_threshold: 0.2, max_records_per_key: 4}\n",
    )
    store = FeatureStore(project)
    try:
        assert store.identity_region == "GB"
        assert store.identity.policy is not None
        assert (store.identity.policy.threshold, store.identity.review_threshold) == (0.9, 0.2)
        assert store.identity_graph.linker.max_records_per_key == 4
    finally:
        store.close()
