"""crmfs: a feature store for recommenders on CRM data.

Definitions import nothing heavy; ``FeatureStore`` (DuckDB, Arrow) loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crmfs.definitions import (
    Aggregation,
    Entity,
    EventSource,
    Fallback,
    FeatureService,
    FeatureView,
    FieldType,
    IdentifierKind,
    Latest,
    Relation,
    Sensitivity,
    col,
)
from crmfs.errors import (
    ConfigError,
    CrmfsError,
    DefinitionError,
    EntityDataError,
    FeatureNotFound,
    IngestError,
    MissingExtra,
    NotApplied,
    RegistryError,
    StorageError,
)

if TYPE_CHECKING:
    from crmfs.store import FeatureStore

__version__ = "0.1.0"

__all__ = [
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


def __getattr__(name: str) -> Any:
    if name == "FeatureStore":
        from crmfs.store import FeatureStore

        return FeatureStore
    raise AttributeError(f"module 'crmfs' has no attribute {name!r}")
