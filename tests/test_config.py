"""crmfs.yaml and the definitions module: every mistake names the file, the key and the problem."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from crmfs.cli.scaffold import PROJECT_YAML
from crmfs.config import (
    PostgresRegistryConfig,
    ProjectConfig,
    RedisOnlineStoreConfig,
    SqliteOnlineStoreConfig,
    SqliteRegistryConfig,
)
from crmfs.errors import BackendUnavailable, ConfigError, DefinitionError
from crmfs.registry.postgres_registry import PostgresRegistry
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
            "project: shop\nonline_store: {type: mongo}\n",
            ["crmfs.yaml", "online_store.type 'mongo' is unknown", "valid types: sqlite, redis"],
        ),
        (
            "project: shop\nregistry: {type: mysql}\n",
            ["registry.type 'mysql' is unknown", "valid types: sqlite, postgres"],
        ),
        (
            "project: shop\nregistry: {type: postgres}\n",
            [
                "registry.dsn is required for type 'postgres'",
                "its options: dsn, password_env, schema, retries, backoff_s, timeout_s",
            ],
        ),
        (
            "project: shop\nregistry: {type: postgres, dsn: 'postgresql://h/db', schema: ''}\n",
            ["registry.schema '' must be a schema name of 1 to 63 bytes"],
        ),
        (
            "project: shop\nonline_store: {type: redis, host: localhost}\n",
            [
                "online_store.host is not an option of 'redis'",
                "its options: url, password_env, key_prefix, retries, backoff_s, timeout_s,"
                " write_lease_s, parallel_fold",
            ],
        ),
        (
            "project: shop\nonline_store: {type: redis, url: 'http://127.0.0.1:6379'}\n",
            ["online_store.url (value not shown) must be a redis://, rediss:// or unix:// URL"],
        ),
        (
            "project: shop\nonline_store: {type: redis, retries: -1}\n",
            ["online_store.retries -1 must be a whole number, 0 or more"],
        ),
        (
            "project: shop\nonline_store: {type: redis, backoff_s: fast}\n",
            ["online_store.backoff_s 'fast' must be a positive number of seconds"],
        ),
        (
            "project: shop\nonline_store: {type: redis, key_prefix: '{shop}'}\n",
            ["online_store.key_prefix '{shop}' must be a non-empty string", "without braces"],
        ),
        (
            "project: shop\nonline_store: {type: redis, password_env: 'my password'}\n",
            ["online_store.password_env 'my password' must be the name of an environment"],
        ),
        (
            "project: shop\nbatch_engine: spark\n",
            ["'batch_engine' must be a mapping with a 'type'", "duckdb", "got 'spark'"],
        ),
        (
            "project: shop\nidentity: {type: postgres, dsn: 'postgresql://u:s3cret@h/db'}\n",
            ["identity.dsn (value not shown) holds a password", "password_env"],
        ),
        (
            "project: shop\nidentity: {type: postgres, dsn: 'postgresql://h/db', writers: all}\n",
            ["identity.writers 'all' must be take_turns or one"],
        ),
        (
            "project: shop\nevent_bus: {type: kafka}\n",
            ["event_bus.type 'kafka' is unknown", "embedded, redis_streams"],
        ),
        (
            "project: shop\nevent_bus: {type: redis_streams, partitions: 0}\n",
            ["event_bus.partitions 0 must be a positive integer"],
        ),
        (
            "project: shop\nbatch_engine: {type: spark, driver_memory: lots}\n",
            ["batch_engine.driver_memory 'lots' must be a JVM memory size"],
        ),
        (
            "project: shop\nbatch_engine: {type: spark, conf: [a]}\n",
            ["batch_engine.conf", "must map Spark setting names to values"],
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


SECRET = "s3cret-in-the-file"


@pytest.mark.parametrize(
    ("key", "setting"),
    [
        ("online_store", f"{{type: redis, url: 'redis://:{SECRET}@127.0.0.1:6379/0'}}"),
        ("online_store", f"{{type: redis, url: 'redis://app:{SECRET}@127.0.0.1:6379/0'}}"),
        ("online_store", f"{{type: redis, url: 'redis://127.0.0.1/0?password={SECRET}'}}"),
        ("online_store", f"{{type: redis, password: {SECRET}}}"),
        ("registry", f"{{type: postgres, dsn: 'postgresql://app:{SECRET}@127.0.0.1/test'}}"),
        ("registry", f"{{type: postgres, dsn: 'host=127.0.0.1 password={SECRET} dbname=t'}}"),
    ],
)
def test_a_password_in_the_file_is_refused_without_repeating_it(
    tmp_path: Path, key: str, setting: str
) -> None:
    message = _error(_project(tmp_path, f"project: shop\n{key}: {setting}\n"))
    assert "crmfs.yaml must not hold secrets" in message
    assert "password_env" in message
    assert SECRET not in message


def test_backend_settings_load_as_typed_values(tmp_path: Path) -> None:
    yaml_text = (
        "project: shop\n"
        "online_store: {type: redis, url: 'redis://127.0.0.1:6379/3', key_prefix: shop-test,"
        " password_env: CRMFS_REDIS_PASSWORD, retries: 5, backoff_s: 0.5}\n"
        "registry: {type: postgres, dsn: 'postgresql://crmfs@127.0.0.1:5432/test',"
        " password_env: CRMFS_PG_PASSWORD, schema: recsys}\n"
    )
    config = ProjectConfig.load(_project(tmp_path, yaml_text))
    assert config.online_store == RedisOnlineStoreConfig(
        url="redis://127.0.0.1:6379/3",
        key_prefix="shop-test",
        password_env="CRMFS_REDIS_PASSWORD",
        retries=5,
        backoff_s=0.5,
    )
    assert config.registry == PostgresRegistryConfig(
        dsn="postgresql://crmfs@127.0.0.1:5432/test",
        password_env="CRMFS_PG_PASSWORD",
        schema="recsys",
    )
    defaults = ProjectConfig.load(_project(tmp_path / "defaults", "project: shop\n"))
    assert defaults.online_store == SqliteOnlineStoreConfig(parallel_fold=True)
    assert defaults.registry == SqliteRegistryConfig()


def test_a_password_variable_that_is_not_set_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRMFS_TEST_UNSET_PASSWORD", raising=False)
    project = _project(
        tmp_path,
        "project: shop\nonline_store: {type: redis, password_env: CRMFS_TEST_UNSET_PASSWORD}\n",
    )
    message = _error(project)
    assert "online_store.password_env names the environment variable" in message
    assert "CRMFS_TEST_UNSET_PASSWORD, which is not set" in message


def test_a_postgres_registry_is_opened_from_the_project_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry tests prove PostgresRegistry itself; this, that crmfs.yaml reaches it."""
    dsn = "postgresql://postgres@127.0.0.1:5432/test"
    schema = f"crmfs_config_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CRMFS_TEST_PG_PASSWORD", "unused-with-trust-auth")
    project = _project(
        tmp_path,
        f"project: shop\nregistry: {{type: postgres, dsn: '{dsn}', schema: {schema},"
        " password_env: CRMFS_TEST_PG_PASSWORD, retries: 0}\n",
    )
    try:
        store = FeatureStore(project)
    except BackendUnavailable as exc:
        pytest.fail(f"PostgreSQL is not reachable at {dsn}: {exc}", pytrace=False)
    try:
        assert isinstance(store.registry, PostgresRegistry)
        store.apply()
        assert sorted(name for _, name in store.registry.applied()) == [
            "activity",
            "clicks",
            "customer",
        ]
    finally:
        store.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_the_backends_shown_by_crmfs_init_load(tmp_path: Path) -> None:
    template = PROJECT_YAML.format(name="shop")
    uncommented = "\n".join(
        line.removeprefix("# ") if line.startswith(("# online_store", "# registry")) else line
        for line in template.splitlines()
    )
    config = ProjectConfig.load(_project(tmp_path, uncommented))
    assert config.online_store == RedisOnlineStoreConfig(password_env="CRMFS_REDIS_PASSWORD")
    assert isinstance(config.registry, PostgresRegistryConfig)
    assert config.registry.password_env == "CRMFS_PG_PASSWORD"
