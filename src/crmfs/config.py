"""The project file ``crmfs.yaml``: where definitions live and which adapters to use."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crmfs.definitions import Catalog
from crmfs.errors import ConfigError, CrmfsError, DefinitionError

PROJECT_FILE = "crmfs.yaml"
ONLINE_STORES = ("sqlite",)
REGISTRIES = ("sqlite",)
BATCH_ENGINES = ("duckdb",)


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
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        known = {"project", "definitions", "data_dir", "online_store", "registry", "batch_engine"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown keys {unknown}; valid keys: {sorted(known)}")
        project = raw.get("project")
        if not isinstance(project, str) or not project:
            raise ConfigError(f"{path}: 'project' must be a non-empty string")
        return cls(
            root=root,
            project=project,
            definitions=root / str(raw.get("definitions", "definitions.py")),
            data_dir=root / str(raw.get("data_dir", "data")),
            online_store=_adapter(path, "online_store", raw.get("online_store"), ONLINE_STORES),
            registry=_adapter(path, "registry", raw.get("registry"), REGISTRIES),
            batch_engine=_adapter(path, "batch_engine", raw.get("batch_engine"), BATCH_ENGINES),
        )


def _adapter(path: Path, key: str, value: object, valid: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        return {"type": valid[0]}
    if not isinstance(value, dict) or "type" not in value:
        raise ConfigError(
            f"{path}: '{key}' must be a mapping with a 'type' (one of {', '.join(valid)})"
        )
    if value["type"] not in valid:
        raise ConfigError(f"{path}: {key}.type {value['type']!r} is not one of {', '.join(valid)}")
    return dict(value)


def load_definitions(path: Path) -> Catalog:
    """Import a definitions module by path and collect its definitions."""
    if not path.exists():
        raise ConfigError(f"definitions module not found: {path}")
    name = f"crmfs_definitions_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except CrmfsError:
        raise
    except Exception as exc:
        raise DefinitionError(str(path), "module", f"failed to import: {exc!r}") from exc
    return Catalog.of(vars(module).values())
