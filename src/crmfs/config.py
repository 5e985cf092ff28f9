"""The project file ``crmfs.yaml``: where definitions live and which adapters to use."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    online_store: dict[str, Any] = field(default_factory=lambda: {"type": "sqlite"})
    registry: dict[str, Any] = field(default_factory=lambda: {"type": "sqlite"})
    batch_engine: dict[str, Any] = field(default_factory=lambda: {"type": "duckdb"})
    identity: dict[str, Any] = field(default_factory=lambda: {"type": "sqlite"})
    compaction_grace_s: int | None = None  # event_log.compaction_grace; None: the log's default

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
            online_store=_adapter(path, "online_store", raw.get("online_store"), ONLINE_STORES),
            registry=_adapter(path, "registry", raw.get("registry"), REGISTRIES),
            batch_engine=_adapter(path, "batch_engine", raw.get("batch_engine"), BATCH_ENGINES),
            identity=_adapter(path, "identity", raw.get("identity"), IDENTITY_GRAPHS),
            compaction_grace_s=_event_log(path, raw.get("event_log")),
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
)


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
    names = ", ".join(valid)
    if value is None:
        return {"type": next(iter(valid))}
    if not isinstance(value, dict) or "type" not in value:
        raise ConfigError(
            f"{path}: '{key}' must be a mapping with a 'type' (one of: {names}),"
            f" e.g. {key}: {{type: {next(iter(valid))}}}; got {value!r}"
        )
    kind = value["type"]
    if not isinstance(kind, str) or kind not in valid:
        raise ConfigError(f"{path}: {key}.type {kind!r} is unknown; valid types: {names}")
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
        problem = check(setting)
        if problem:
            raise ConfigError(f"{path}: {key}.{option} {setting!r} {problem}")
    return dict(value)


OptionCheck = Callable[[object], str | None]


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


ONLINE_STORES: dict[str, dict[str, OptionCheck]] = {"sqlite": {"parallel_fold": _boolean}}
REGISTRIES: dict[str, dict[str, OptionCheck]] = {"sqlite": {}}
IDENTITY_GRAPHS: dict[str, dict[str, OptionCheck]] = {
    "sqlite": {
        "default_region": _region,
        "max_records_per_key": _positive_int,
        "names_must_agree": _boolean,
        "review_threshold": _probability,
        "link_threshold": _probability,
        "no_link_floor": _probability,
    }
}
BATCH_ENGINES: dict[str, dict[str, OptionCheck]] = {
    "duckdb": {"threads": _positive_int, "memory_limit": _memory_size}
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
