"""Definitions: frozen, serializable values with no I/O."""

from crmfs.definitions.catalog import Catalog, fingerprint
from crmfs.definitions.entity import Entity
from crmfs.definitions.fallback import Fallback, FallbackKind
from crmfs.definitions.features import Aggregation, Function, Latest, WindowFeature, default_hop
from crmfs.definitions.filters import Expr, col
from crmfs.definitions.identifiers import GOLDEN_ID, IDENTITY_RECORD, IdentifierKind
from crmfs.definitions.metadata import Sensitivity
from crmfs.definitions.relation import Relation
from crmfs.definitions.service import FeatureService
from crmfs.definitions.source import EventSource
from crmfs.definitions.types import FieldType
from crmfs.definitions.view import FeatureView, LatestFeature

__all__ = [
    "GOLDEN_ID",
    "IDENTITY_RECORD",
    "Aggregation",
    "Catalog",
    "Entity",
    "EventSource",
    "Expr",
    "Fallback",
    "FallbackKind",
    "FeatureService",
    "FeatureView",
    "FieldType",
    "Function",
    "IdentifierKind",
    "Latest",
    "LatestFeature",
    "Relation",
    "Sensitivity",
    "WindowFeature",
    "col",
    "default_hop",
    "fingerprint",
]
