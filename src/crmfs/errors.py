"""The one exception tree of crmfs.

::

    CrmfsError
    ├── DefinitionError          a definition is invalid (names the definition and field)
    ├── ConfigError              crmfs.yaml or an argument is wrong
    ├── RegistryError
    │   ├── NotApplied           a definition is used before `apply`
    │   └── RegistryConflict     an apply was overtaken by another one since its plan
    ├── FeatureNotFound          a feature reference names no feature
    ├── IngestError              a whole ingest call cannot proceed (bad file, unknown source)
    │   └── BusFull              an event-bus partition is over its backlog bound: retry later
    ├── EntityDataError          an entity dataframe for a training set is malformed
    ├── StorageError             a storage adapter failed (foreign errors are wrapped here)
    │   └── BackendUnavailable   a server (PostgreSQL, Redis) cannot be reached: retry later
    └── MissingExtra             an optional dependency is not installed

Rejected *records* are not exceptions: they go to the quarantine with their reason.
HTTP status codes are chosen in the API layer, never here.
"""

from __future__ import annotations


class CrmfsError(Exception):
    """Root of every error crmfs raises on purpose."""


class DefinitionError(CrmfsError):
    """A definition is invalid. Names the definition, the field and the problem."""

    def __init__(self, definition: str, field: str, problem: str) -> None:
        self.definition = definition
        self.field = field
        self.problem = problem
        super().__init__(f"{definition}: field {field!r}: {problem}")


class ConfigError(CrmfsError):
    """The project configuration or an argument is wrong."""


class RegistryError(CrmfsError):
    """The registry cannot do what was asked."""


class NotApplied(RegistryError):
    """A definition is used before it was applied to the registry."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"{name!r} is not applied; run `crmfs apply` first")


class FeatureNotFound(CrmfsError):
    """A feature reference does not name a known feature."""

    def __init__(self, feature_ref: str, known: list[str] | None = None) -> None:
        self.feature_ref = feature_ref
        hint = f"; known features: {', '.join(sorted(known)[:20])}" if known else ""
        super().__init__(f"feature {feature_ref!r} not found{hint}")


class IngestError(CrmfsError):
    """An ingest call cannot proceed at all (unknown source, unreadable file)."""


class EntityDataError(CrmfsError):
    """Entity rows (of a training set or an online read) are malformed."""


class StorageError(CrmfsError):
    """A storage adapter failed; the foreign error is the cause."""


class MissingExtra(CrmfsError):
    """An optional dependency is missing; names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{package} is not installed; install it with: pip install 'crmfs[{extra}]'"
        )


class IdentityError(CrmfsError):
    """An identity operation cannot be done (no records to fit on, an unknown reference)."""


class RegistryConflict(RegistryError):
    """An apply planned at one registry generation found the registry at another.

    Another apply got there first; nothing of this one was written. ``changes`` lists what
    the applies since ``expected`` changed, one line each.
    """

    def __init__(self, expected: int, found: int, changes: list[str]) -> None:
        self.expected = expected
        self.found = found
        self.changes = changes
        shown = "; ".join(changes[:10]) + ("; ..." if len(changes) > 10 else "")
        what = f": {shown}" if shown else ""
        super().__init__(
            f"the registry changed since this plan was made (generation {expected} -> {found}"
            f"{what}); nothing was applied: run `crmfs plan` and `crmfs apply` again"
        )


class BackendUnavailable(StorageError):
    """A server backend (PostgreSQL, Redis) cannot be reached; retrying later may succeed.

    Raised after the adapter's own bounded retries; the message says what was written.
    """


class BusFull(IngestError):
    """A publish found an event-bus partition holding ``length`` messages, at or over its
    bound (back-pressure): nothing of that publish call was written. Retry later."""

    def __init__(self, partition: str, length: int, bound: int, waited_s: float) -> None:
        self.partition = partition
        self.length = length
        self.bound = bound
        self.waited_s = waited_s
        waited = f" after waiting {waited_s:.1f} s" if waited_s else ""
        super().__init__(
            f"event bus partition {partition!r} holds {length:,} messages, at or over its bound"
            f" of {bound:,}{waited}: the stream workers are behind (start more, or check that"
            " they run); nothing of this publish was written, retry it later"
        )


class Unauthenticated(CrmfsError):
    """A request to the feature server has no valid API key (HTTP 401)."""


class Forbidden(CrmfsError):
    """The caller's roles do not allow what it asked (HTTP 403)."""


class PayloadTooLarge(CrmfsError):
    """A request body is over the feature server's limit (HTTP 413)."""
