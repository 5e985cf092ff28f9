"""The project file ``crmfs.yaml``: where definitions live and which adapters to use."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from crmfs.definitions import Catalog
from crmfs.errors import ConfigError, CrmfsError, DefinitionError
from crmfs.timestamps import parse_duration

PROJECT_FILE = "crmfs.yaml"


@dataclass(frozen=True)
class ProjectConfig:
    """A validated ``crmfs.yaml``."""

    root: Path
    project: str
    definitions: Path
    data_dir: Path
    online_store: OnlineStoreConfig = field(default_factory=lambda: SqliteOnlineStoreConfig())
    registry: RegistryConfig = field(default_factory=lambda: SqliteRegistryConfig())
    batch_engine: dict[str, Any] = field(default_factory=lambda: {"type": "duckdb"})
    identity: dict[str, Any] = field(default_factory=lambda: {"type": "sqlite"})
    event_bus: dict[str, Any] = field(default_factory=lambda: {"type": "embedded"})
    compaction_grace_s: int | None = None  # event_log.compaction_grace; None: the log's default
    server: dict[str, Any] = field(default_factory=dict)  # typed by crmfs.api.settings

    @classmethod
    def load(cls, root: Path) -> ProjectConfig:
        path = root / PROJECT_FILE
        if not path.exists():
            raise ConfigError(
                f"no {PROJECT_FILE} in {root.resolve()}; create one with `crmfs init DIR`"
            )
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot be read: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{path}: expected a mapping of keys (project: ..., definitions: ...)"
                f" at the top level, got {type(raw).__name__}"
            )
        unknown = sorted(str(key) for key in set(raw) - set(_KEYS))
        if unknown:
            raise ConfigError(f"{path}: unknown keys {unknown}; valid keys: {sorted(_KEYS)}")
        project = raw.get("project")
        if not isinstance(project, str) or not project:
            raise ConfigError(f"{path}: 'project' must be a non-empty string, got {project!r}")
        return cls(
            root=root,
            project=project,
            definitions=root / _text(path, "definitions", raw.get("definitions", "definitions.py")),
            data_dir=root / _text(path, "data_dir", raw.get("data_dir", "data")),
            online_store=_typed(path, "online_store", raw.get("online_store"), ONLINE_STORES),
            registry=_typed(path, "registry", raw.get("registry"), REGISTRIES),
            batch_engine=_adapter(path, "batch_engine", raw.get("batch_engine"), BATCH_ENGINES),
            identity=_adapter(path, "identity", raw.get("identity"), IDENTITY_GRAPHS),
            event_bus=_adapter(path, "event_bus", raw.get("event_bus"), EVENT_BUSES),
            compaction_grace_s=_event_log(path, raw.get("event_log")),
            server=_server(path, raw.get("server")),
        )


_KEYS = (
    "project",
    "definitions",
    "data_dir",
    "online_store",
    "registry",
    "batch_engine",
    "event_log",
    "identity",
    "event_bus",
    "server",
)


def _server(path: Path, value: object) -> dict[str, Any]:
    """The feature server's section, each option checked (``roles`` by the server, which
    knows their abilities and labels)."""
    if value is None:
        return {}
    _check_options(path, "server", value, _SERVER_OPTIONS)
    assert isinstance(value, dict)
    if value.get("cache") is not None:
        _check_options(path, "server.cache", value["cache"], _CACHE_OPTIONS)
    return value


def _check_options(path: Path, key: str, value: object, options: Mapping[str, OptionCheck]) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: '{key}' must be a mapping of options, got {value!r}")
    for option, setting in value.items():
        check = options.get(option)
        if check is None:
            raise ConfigError(
                f"{path}: {key}.{option} is not an option; its options: {', '.join(options)}"
            )
        _refuse_bad_value(path, f"{key}.{option}", setting, check(setting), False)


def _event_log(path: Path, value: object) -> int | None:
    """``event_log: {compaction_grace: 10m}``: how long compacted files stay readable."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"compaction_grace"}:
        raise ConfigError(
            f"{path}: 'event_log' must be a mapping with only 'compaction_grace'"
            f" (e.g. event_log: {{compaction_grace: 10m}}); got {value!r}"
        )
    grace = value.get("compaction_grace")
    if grace is None:
        return None
    try:
        return parse_duration(grace)
    except ValueError as exc:
        raise ConfigError(f"{path}: event_log.compaction_grace: {exc}") from None


_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")


def _text(path: Path, key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: '{key}' must be a path (a non-empty string), got {value!r}")
    return value


def _adapter(
    path: Path, key: str, value: object, valid: Mapping[str, Mapping[str, OptionCheck]]
) -> dict[str, Any]:
    if value is None:
        return {"type": next(iter(valid))}
    kind, value = _chosen_type(path, key, value, valid)
    options = valid[kind]
    for option, setting in value.items():
        if option == "type":
            continue
        check = options.get(option)
        if check is None:
            known = ", ".join(options) or "none"
            raise ConfigError(
                f"{path}: {key}.{option} is not an option of {kind!r}; its options: {known}"
            )
        _refuse_bad_value(
            path, f"{key}.{option}", setting, check(setting), option in _MAY_HOLD_SECRETS
        )
    return dict(value)


def _chosen_type(
    path: Path, key: str, value: object, valid: Mapping[str, object]
) -> tuple[str, dict[str, Any]]:
    """The ``type`` a backend section (``{type: ..., option: ...}``) chooses, one of
    ``valid``'s, and the section; else an error listing them."""
    names = ", ".join(valid)
    if not isinstance(value, dict) or "type" not in value:
        raise ConfigError(
            f"{path}: '{key}' must be a mapping with a 'type' (one of: {names}),"
            f" e.g. {key}: {{type: {next(iter(valid))}}}; got {value!r}"
        )
    kind = value["type"]
    if not isinstance(kind, str) or kind not in valid:
        raise ConfigError(f"{path}: {key}.type {kind!r} is unknown; valid types: {names}")
    return kind, value


def _refuse_bad_value(
    path: Path, where: str, setting: object, problem: str | None, secret: bool
) -> None:
    """An option's check failed (``problem``): an error naming it, without the value where
    it may hold a secret."""
    if problem:
        shown = "(value not shown)" if secret else repr(setting)
        raise ConfigError(f"{path}: {where} {shown} {problem}")


OptionCheck = Callable[[object], str | None]
# Options whose mistaken value may be a secret (a password in a connection string): errors
# about them do not repeat the value.
_MAY_HOLD_SECRETS = frozenset({"dsn", "url"})


def _positive_int(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return None
    return "must be a positive integer"


def _memory_size(value: object) -> str | None:
    if isinstance(value, str) and _MEMORY.match(value.strip()):
        return None
    return "must be a size such as '4GB' or '512MiB'"


def _boolean(value: object) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _probability(value: object) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1:
        return None
    return "must be a probability between 0 and 1"


def _region(value: object) -> str | None:
    if isinstance(value, str) and len(value) == 2 and value.isalpha() and value.isupper():
        return None
    return "must be a two-letter region code such as 'US' or 'GB'"


def _count(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return None
    return "must be a whole number, 0 or more"


def _seconds(value: object) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return None
    return "must be a positive number of seconds"


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_HINT = (
    "crmfs.yaml must not hold secrets: put the password in an environment variable and name"
    " it with password_env (e.g. password_env: CRMFS_PASSWORD)"
)


def _env_name(value: object) -> str | None:
    if isinstance(value, str) and _ENV_NAME.match(value):
        return None
    return "must be the name of an environment variable, such as CRMFS_REDIS_PASSWORD"


def _key_prefix(value: object) -> str | None:
    if isinstance(value, str) and value and not set(value) & set("{}") and len(value) <= 64:
        return None
    return "must be a non-empty string of at most 64 characters without braces"


def _schema_name(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value.encode()) <= 63:
        return None
    return "must be a schema name of 1 to 63 bytes"


def _wait_seconds(value: object) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return None
    return "must be a number of seconds, 0 or more"


def _writer_mode(value: object) -> str | None:
    return None if value in ("take_turns", "one") else "must be take_turns or one"


def _name(value: object) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be a non-empty string"


_JVM_MEMORY = re.compile(r"^\d+[kmgt]?$", re.IGNORECASE)


def _jvm_memory(value: object) -> str | None:
    if isinstance(value, str) and _JVM_MEMORY.match(value.strip()):
        return None
    return "must be a JVM memory size such as '4g' or '512m'"


def _string_mapping(value: object) -> str | None:
    if isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str | int | float | bool) for k, v in value.items()
    ):
        return None
    return "must map Spark setting names to values (spark.executor.memory: 4g)"


def _url_password(url: str) -> bool:
    """Whether a URL carries a password (``user:password@`` or ``?password=``)."""
    parts = urlsplit(url)
    return parts.password is not None or "password" in parse_qs(parts.query)


def _redis_url(value: object) -> str | None:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        return "must be a redis://, rediss:// or unix:// URL, e.g. redis://127.0.0.1:6379/0"
    if _url_password(value):
        return "holds a password; " + _SECRET_HINT
    return None


def _postgres_dsn(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a PostgreSQL connection string, e.g. postgresql://127.0.0.1:5432/crmfs"
    if urlsplit(value).scheme in ("postgresql", "postgres"):
        has_password = _url_password(value)
    else:  # key=value pairs: host=... dbname=...
        has_password = re.search(r"(^|\s)password\s*=", value) is not None
    if has_password:
        return "holds a password; " + _SECRET_HINT
    return None


def _option(default: Any, check: OptionCheck, *, may_hold_secret: bool = False) -> Any:
    """A backend option with its default and the check of a value given in crmfs.yaml
    (``may_hold_secret``: a wrong value is not repeated in the error)."""
    return field(default=default, metadata={"check": check, "secret": may_hold_secret})


def _required(check: OptionCheck, *, may_hold_secret: bool = False) -> Any:
    return field(metadata={"check": check, "secret": may_hold_secret})


@dataclass(frozen=True)
class SqliteOnlineStoreConfig:
    """``online_store: {type: sqlite}``: the embedded store, ``<data_dir>/online.db``."""

    parallel_fold: bool = _option(True, _boolean)


@dataclass(frozen=True)
class RedisOnlineStoreConfig:
    """``online_store: {type: redis, url: ...}`` (see docs/redis.md). The password, if the
    server wants one, is read from the environment variable named by ``password_env``."""

    url: str = _option("redis://127.0.0.1:6379/0", _redis_url, may_hold_secret=True)
    password_env: str | None = _option(None, _env_name)
    key_prefix: str | None = _option(None, _key_prefix)  # None: the project name
    retries: int = _option(3, _count)
    backoff_s: float = _option(0.05, _seconds)
    timeout_s: float = _option(5.0, _seconds)
    write_lease_s: float = _option(30.0, _seconds)
    parallel_fold: bool = _option(True, _boolean)


@dataclass(frozen=True)
class SqliteRegistryConfig:
    """``registry: {type: sqlite}``: the embedded registry, ``<data_dir>/registry.db``."""


@dataclass(frozen=True)
class PostgresRegistryConfig:
    """``registry: {type: postgres, dsn: ...}``: the password, if the server wants one, is
    read from the environment variable named by ``password_env``."""

    dsn: str = _required(_postgres_dsn, may_hold_secret=True)
    password_env: str | None = _option(None, _env_name)
    schema: str = _option("crmfs", _schema_name)
    retries: int = _option(3, _count)
    backoff_s: float = _option(0.2, _seconds)
    timeout_s: int = _option(5, _positive_int)


OnlineStoreConfig = SqliteOnlineStoreConfig | RedisOnlineStoreConfig
RegistryConfig = SqliteRegistryConfig | PostgresRegistryConfig
ONLINE_STORES: dict[str, type[OnlineStoreConfig]] = {
    "sqlite": SqliteOnlineStoreConfig,
    "redis": RedisOnlineStoreConfig,
}
REGISTRIES: dict[str, type[RegistryConfig]] = {
    "sqlite": SqliteRegistryConfig,
    "postgres": PostgresRegistryConfig,
}


def _typed(path: Path, key: str, value: object, valid: Mapping[str, type[Any]]) -> Any:
    """The typed configuration of the backend ``value`` (``{type: ..., option: ...}``) names,
    each option checked; an error names the key and lists the valid types or options."""
    if value is None:
        return next(iter(valid.values()))()
    kind, value = _chosen_type(path, key, value, valid)
    options = {option.name: option for option in dataclasses.fields(valid[kind])}
    known = ", ".join(options) or "none"
    for option, setting in value.items():
        if option == "type":
            continue
        if option not in options:
            hint = f"; {_SECRET_HINT}" if option == "password" and "password_env" in options else ""
            raise ConfigError(
                f"{path}: {key}.{option} is not an option of {kind!r}; its options: {known}{hint}"
            )
        metadata = options[option].metadata
        _refuse_bad_value(
            path, f"{key}.{option}", setting, metadata["check"](setting), metadata["secret"]
        )
    for name, spec in options.items():
        if name not in value and spec.default is dataclasses.MISSING:
            raise ConfigError(
                f"{path}: {key}.{name} is required for type {kind!r}; its options: {known}"
            )
    return valid[kind](**{name: setting for name, setting in value.items() if name != "type"})


def _mapping(value: object) -> str | None:
    return None if isinstance(value, dict) else "must be a mapping"


def _mask_or_refuse(value: object) -> str | None:
    return None if value in ("mask", "refuse") else "must be 'mask' or 'refuse'"


def _cache_switch(value: object) -> str | None:
    return None if isinstance(value, bool) or value == "auto" else "must be true, false or auto"


def _cache_ttl(value: object) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 60:
        return None
    return "must be a number of seconds in (0, 60]"


_SERVER_OPTIONS: dict[str, OptionCheck] = {
    "on_sensitive": _mask_or_refuse,
    "max_entities": _positive_int,
    "max_body_mb": _positive_int,
    "cache": _mapping,
    "roles": _mapping,
}
_CACHE_OPTIONS: dict[str, OptionCheck] = {
    "enabled": _cache_switch,
    "max_entries": _positive_int,
    "ttl_s": _cache_ttl,
}
_IDENTITY_OPTIONS: dict[str, OptionCheck] = {
    "default_region": _region,
    "max_records_per_key": _positive_int,
    "names_must_agree": _boolean,
    "review_threshold": _probability,
    "link_threshold": _probability,
    "no_link_floor": _probability,
}
IDENTITY_GRAPHS: dict[str, dict[str, OptionCheck]] = {
    "sqlite": _IDENTITY_OPTIONS,
    "postgres": {
        **_IDENTITY_OPTIONS,
        "dsn": _postgres_dsn,
        "password_env": _env_name,
        "schema": _schema_name,
        "retries": _count,
        "backoff_s": _seconds,
        "timeout_s": _positive_int,
        "wait_s": _wait_seconds,
        "writers": _writer_mode,
    },
}
EVENT_BUSES: dict[str, dict[str, OptionCheck]] = {
    "embedded": {},
    "redis_streams": {
        "url": _redis_url,
        "password_env": _env_name,
        "key_prefix": _key_prefix,
        "partitions": _positive_int,
        "max_backlog": _count,
        "block": _boolean,
        "publish_timeout_s": _seconds,
        "lease_s": _seconds,
        "claim_idle_s": _wait_seconds,
        "max_deliveries": _positive_int,
    },
}
BATCH_ENGINES: dict[str, dict[str, OptionCheck]] = {
    "duckdb": {"threads": _positive_int, "memory_limit": _memory_size},
    "spark": {
        "master": _name,
        "app_name": _name,
        "shuffle_partitions": _positive_int,
        "driver_memory": _jvm_memory,
        "conf": _string_mapping,
    },
}


def load_definitions(path: Path) -> Catalog:
    """Import a definitions module by path and collect its definitions."""
    where = f"{PROJECT_FILE} 'definitions'"
    if not path.exists():
        raise ConfigError(
            f"{where}: definitions module not found: {path}; point 'definitions' at the Python"
            " file of your definitions, relative to the project folder"
        )
    if not path.is_file() or path.suffix != ".py":
        raise ConfigError(f"{where}: {path} is not a Python file (.py)")
    name = f"crmfs_definitions_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{where}: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except CrmfsError:
        raise
    except Exception as exc:
        raise DefinitionError(str(path), "module", f"failed to import: {exc!r}") from exc
    return Catalog.of(vars(module).values())
