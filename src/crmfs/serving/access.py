"""Access control of served features: roles, API keys hashed at rest, masking decisions.

A role allows abilities (``read`` features, ``ingest`` events, ``identity`` lookups,
``admin``), feature services (``"*"``: any, and ad-hoc feature lists), and sensitivity
labels. A feature whose label the caller's roles lack is masked (value null, status
``masked``) or the whole request refused, by the server's ``on_sensitive`` policy.

API keys are random tokens shown once; only their SHA-256 is stored (a fast hash is right
for high-entropy tokens: there is nothing to brute-force), in ``<data>/api_keys.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from crmfs.definitions import Sensitivity
from crmfs.errors import ConfigError, Forbidden, Unauthenticated

MASKED = "masked"
ANY_SERVICE = "*"
KEYS_FILE = "api_keys.json"
_KEY_PREFIX = "crmfs_"


class Ability(StrEnum):
    READ = "read"
    INGEST = "ingest"
    IDENTITY = "identity"
    ADMIN = "admin"


@dataclass(frozen=True)
class Role:
    name: str
    abilities: frozenset[Ability]
    services: frozenset[str]
    labels: frozenset[Sensitivity]


_EVERY_LABEL = frozenset(Sensitivity)
DEFAULT_ROLES: dict[str, Role] = {
    "reader": Role(
        "reader",
        frozenset({Ability.READ}),
        frozenset({ANY_SERVICE}),
        frozenset({Sensitivity.PUBLIC, Sensitivity.INTERNAL}),
    ),
    "trusted_reader": Role(
        "trusted_reader",
        frozenset({Ability.READ, Ability.IDENTITY}),
        frozenset({ANY_SERVICE}),
        _EVERY_LABEL,
    ),
    "ingester": Role("ingester", frozenset({Ability.INGEST}), frozenset(), frozenset()),
    "admin": Role("admin", frozenset(Ability), frozenset({ANY_SERVICE}), _EVERY_LABEL),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and what its roles allow together."""

    name: str
    roles: tuple[str, ...]
    abilities: frozenset[Ability]
    services: frozenset[str]
    labels: frozenset[Sensitivity]

    @classmethod
    def of(cls, name: str, roles: Sequence[Role]) -> Principal:
        return cls(
            name,
            tuple(r.name for r in roles),
            frozenset().union(*(r.abilities for r in roles)),
            frozenset().union(*(r.services for r in roles)),
            frozenset().union(*(r.labels for r in roles)),
        )

    @property
    def who(self) -> str:
        """The key and its roles, as errors name them."""
        return f"key {self.name!r} (roles {', '.join(self.roles) or 'none'})"

    def require(self, ability: Ability) -> None:
        if ability not in self.abilities:
            raise Forbidden(
                f"{self.who} may not {ability.value}: give it a role with {ability.value!r}"
            )

    def may_read_service(self, service: str | None) -> bool:
        return ANY_SERVICE in self.services or (service is not None and service in self.services)


OPEN_ACCESS = Principal.of("anonymous", [DEFAULT_ROLES["admin"]])  # no keys configured


def parse_roles(raw: object) -> dict[str, Role]:
    """``server.roles`` of crmfs.yaml over the default roles; errors name the field."""
    roles = dict(DEFAULT_ROLES)
    if raw is None:
        return roles
    if not isinstance(raw, Mapping):
        raise ConfigError("crmfs.yaml server.roles must map role names to their settings")
    for name, spec in raw.items():
        where = f"crmfs.yaml server.roles.{name}"
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{where}: a role name must be an identifier")
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where} must be a mapping (abilities, services, labels)")
        unknown = sorted(set(spec) - {"abilities", "services", "labels"})
        if unknown:
            raise ConfigError(
                f"{where}: unknown keys {unknown}; valid: abilities, services, labels"
            )
        roles[name] = Role(
            name,
            frozenset(_members(f"{where}.abilities", spec.get("abilities", []), Ability)),
            frozenset(_strings(f"{where}.services", spec.get("services", []))),
            frozenset(_members(f"{where}.labels", spec.get("labels", []), Sensitivity)),
        )
    return roles


def _strings(where: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of names")
    return value


E = TypeVar("E", bound=StrEnum)


def _members(where: str, value: object, kind: type[E]) -> list[E]:
    out = []
    for item in _strings(where, value):
        try:
            out.append(kind(item))
        except ValueError:
            valid = ", ".join(m.value for m in kind)
            raise ConfigError(f"{where}: {item!r} is not one of {valid}") from None
    return out


@dataclass(frozen=True)
class KeyRecord:
    name: str
    sha256: str
    roles: tuple[str, ...]
    created_at: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """The project's API keys (hashes only), re-read when the file changes, so that a key
    added or revoked takes effect in running servers at their next request."""

    def __init__(self, path: Path, roles: Mapping[str, Role]) -> None:
        self.path = path
        self.roles = roles
        self._lock = threading.Lock()
        self._by_hash: dict[str, Principal] = {}
        self._seen: tuple[int, int, int] | None = None
        self._load()

    @property
    def configured(self) -> bool:
        """Whether any key exists (without keys, a server on loopback is open)."""
        self._refresh()
        return bool(self._by_hash)

    def records(self) -> list[KeyRecord]:
        if not self.path.exists():
            return []
        try:
            raw = json.loads(self.path.read_text())
            return [
                KeyRecord(r["name"], r["sha256"], tuple(r["roles"]), r["created_at"]) for r in raw
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self.path}: not a valid API key file: {exc}") from exc

    def add(self, name: str, roles: Iterable[str]) -> str:
        """Create a key for ``name`` with ``roles``; the key is returned once, never stored."""
        roles = tuple(roles)
        unknown = sorted(set(roles) - set(self.roles))
        if not roles or unknown:
            raise ConfigError(
                f"roles {unknown or '(none)'} are not defined; known: {sorted(self.roles)}"
            )
        records = self.records()
        if any(r.name == name for r in records):
            raise ConfigError(f"an API key named {name!r} exists; revoke it first")
        key = _KEY_PREFIX + secrets.token_urlsafe(32)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        records.append(KeyRecord(name, hash_key(key), roles, stamp))
        self._write(records)
        return key

    def revoke(self, name: str) -> None:
        records = self.records()
        kept = [r for r in records if r.name != name]
        if len(kept) == len(records):
            raise ConfigError(f"no API key named {name!r}")
        self._write(kept)

    def authenticate(self, key: str | None) -> Principal:
        """The key's principal (after ``configured``, which looked for changes)."""
        if not key:
            raise Unauthenticated("no API key: send 'Authorization: Bearer <key>' or 'X-API-Key'")
        # Looked up by the key's hash: timing reveals nothing about stored keys.
        principal = self._by_hash.get(hash_key(key))
        if principal is None:
            raise Unauthenticated("the API key is not valid (unknown or revoked)")
        return principal

    def _write(self, records: list[KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = [r.__dict__ | {"roles": list(r.roles)} for r in records]
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(body, indent=2) + "\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)
        self._load()

    def _refresh(self) -> None:
        self._load()  # a stat of the file (a microsecond); read again only if it changed

    def _load(self) -> None:
        with self._lock:
            try:
                stat = self.path.stat()
                seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            except FileNotFoundError:
                seen = None
            if seen == self._seen:
                return
            by_hash = {}
            for record in self.records():
                roles = [self.roles[r] for r in record.roles if r in self.roles]
                by_hash[record.sha256] = Principal.of(record.name, roles)
            self._by_hash, self._seen = by_hash, seen


def decide_read(
    principal: Principal,
    service: str | None,
    labels: Mapping[str, Sensitivity],
    refuse_sensitive: bool,
) -> list[str]:
    """The features of a read to mask for ``principal`` (``labels``: each feature's
    sensitivity), whose ``read`` ability its caller checked; Forbidden if it may not read
    the selection, or if sensitive features are refused rather than masked."""
    if not principal.may_read_service(service):
        what = f"feature service {service!r}" if service else "ad-hoc feature lists"
        raise Forbidden(f"{principal.who} may not read {what}")
    hidden = [ref for ref, label in labels.items() if label not in principal.labels]
    if hidden and refuse_sensitive:
        shown = ", ".join(f"{ref} ({labels[ref].value})" for ref in hidden[:5])
        raise Forbidden(
            f"key {principal.name!r} lacks the sensitivity labels of {shown}"
            f"{' ...' if len(hidden) > 5 else ''}"
        )
    return hidden


def describe(principal: Principal) -> dict[str, Any]:
    return {"key": principal.name, "roles": list(principal.roles)}
