"""The public API is curated: what ``import crmfs`` offers is pinned here, and importing it
stays light (no DuckDB, Arrow, Redis or server library until a store is made)."""

from __future__ import annotations

import subprocess
import sys

import crmfs

PUBLIC = [
    "Aggregation",
    "ConfigError",
    "CrmfsError",
    "DefinitionError",
    "Entity",
    "EntityDataError",
    "EventSource",
    "Fallback",
    "FeatureNotFound",
    "FeatureService",
    "FeatureStore",
    "FeatureView",
    "FieldType",
    "IdentifierKind",
    "IngestError",
    "Latest",
    "MissingExtra",
    "NotApplied",
    "RegistryError",
    "Relation",
    "Sensitivity",
    "StorageError",
    "col",
]


def test_the_public_names_are_pinned_and_all_resolve() -> None:
    assert sorted(crmfs.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(crmfs, name) is not None


def test_importing_crmfs_loads_no_heavy_library() -> None:
    probe = (
        "import sys, crmfs; heavy = {'duckdb', 'pyarrow', 'redis', 'fastapi', 'pyspark'};"
        " print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
