"""The feature server's settings: the ``server`` section of crmfs.yaml (its options checked
by ``crmfs.config``, its roles by ``serving.access``), typed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crmfs.serving.access import Role, parse_roles

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
        """From a ``server`` section that ``ProjectConfig.load`` checked."""
        cache = raw.get("cache") or {}
        return cls(
            refuse_sensitive=raw.get("on_sensitive", "mask") == "refuse",
            cache=CacheSettings(
                cache.get("enabled", AUTO),
                cache.get("max_entries", 100_000),
                float(cache.get("ttl_s", 1.0)),
            ),
            roles=parse_roles(raw.get("roles")),
            max_entities=raw.get("max_entities", 1_000),
            max_body_bytes=raw.get("max_body_mb", 64) * 2**20,
        )
