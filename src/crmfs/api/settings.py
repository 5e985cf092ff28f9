"""The ``server`` section of crmfs.yaml, checked (errors name the field)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crmfs.errors import ConfigError
from crmfs.serving.access import Role, parse_roles

_KEYS = ("on_sensitive", "cache", "roles", "max_entities", "max_body_mb")
_CACHE_KEYS = ("enabled", "max_entries", "ttl_s")


AUTO = "auto"


@dataclass(frozen=True)
class CacheSettings:
    # auto: on over stores whose change feed names the keys written (Redis); SQLite's own
    # blob cache already serves hot entities from memory, checked at every read.
    enabled: bool | str = AUTO
    max_entries: int = 100_000
    ttl_s: float = 1.0


@dataclass(frozen=True)
class ServerSettings:
    refuse_sensitive: bool = False  # on_sensitive: mask (default) or refuse
    cache: CacheSettings = field(default_factory=CacheSettings)
    roles: Mapping[str, Role] = field(default_factory=lambda: parse_roles(None))
    max_entities: int = 1_000
    max_body_bytes: int = 64 * 2**20  # larger request bodies get 413

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> ServerSettings:
        unknown = sorted(set(raw) - set(_KEYS))
        if unknown:
            raise ConfigError(f"crmfs.yaml server: unknown keys {unknown}; valid: {list(_KEYS)}")
        on_sensitive = raw.get("on_sensitive", "mask")
        if on_sensitive not in ("mask", "refuse"):
            raise ConfigError(
                f"crmfs.yaml server.on_sensitive: {on_sensitive!r} is not 'mask' or 'refuse'"
            )
        max_entities = raw.get("max_entities", 1_000)
        if not isinstance(max_entities, int) or isinstance(max_entities, bool) or max_entities < 1:
            raise ConfigError(
                f"crmfs.yaml server.max_entities: {max_entities!r} is not a positive integer"
            )
        return cls(
            on_sensitive == "refuse",
            _cache(raw.get("cache")),
            parse_roles(raw.get("roles")),
            max_entities,
        )


def _cache(raw: object) -> CacheSettings:
    if raw is None:
        return CacheSettings()
    if not isinstance(raw, Mapping):
        raise ConfigError("crmfs.yaml server.cache must be a mapping (enabled, max_entries, ttl_s)")
    unknown = sorted(set(raw) - set(_CACHE_KEYS))
    if unknown:
        raise ConfigError(
            f"crmfs.yaml server.cache: unknown keys {unknown}; valid: {list(_CACHE_KEYS)}"
        )
    enabled = raw.get("enabled", AUTO)
    entries = raw.get("max_entries", 100_000)
    ttl = raw.get("ttl_s", 1.0)
    if not isinstance(enabled, bool) and enabled != AUTO:
        raise ConfigError(
            f"crmfs.yaml server.cache.enabled: {enabled!r} is not true, false or auto"
        )
    if not isinstance(entries, int) or isinstance(entries, bool) or entries < 1:
        raise ConfigError(
            f"crmfs.yaml server.cache.max_entries: {entries!r} is not a positive integer"
        )
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not 0 < ttl <= 60:
        raise ConfigError(
            f"crmfs.yaml server.cache.ttl_s: {ttl!r} is not a number of seconds in (0, 60]"
        )
    return CacheSettings(enabled, entries, float(ttl))
