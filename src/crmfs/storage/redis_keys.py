"""Where the Redis online store keeps things: one short, binary-safe key per entity state.

Every key of a store starts with the hash tag ``{prefix}`` (the project name unless
``key_prefix`` says otherwise), so Redis Cluster puts all of them in one hash slot: a write
of many tables and the watermark is one Lua script, and a script may only touch keys of one
slot. Keys (``p`` is the prefix, ``5`` a key space)::

    {p}:m              hash   marks: s (watermark seq), a (its ingested_at), i (identity
                              mark), x (id of the last write, so a retried write is not
                              applied twice)
    {p}:t              hash   table name -> its current key space (a decimal number)
    {p}:n              string the last key space handed out (INCR)
    {p}:l              string the write lease of an open staged write (its token, with a TTL)
    {p}:g              set    key spaces to delete (replaced or dropped tables)
    {p}:f              hash   key space being filled by a table replacement -> start time (s)
    {p}:5:s<utf-8>     string the state blob of the entity with string key <utf-8>
    {p}:5:i<decimal>   string the state blob of the entity with int key <decimal>

A table's name appears once, in ``{p}:t``; its entities' keys carry the short key space
instead. Replacing a table fills a new key space and then points the table at it in one
step; the old space is deleted afterwards. The type letter keeps the int key ``1`` and the
string key ``"1"`` apart, as the SQLite store does.
"""

from __future__ import annotations

from crmfs.errors import ConfigError
from crmfs.storage.ports import EntityKey

_GLOB_SPECIALS = frozenset(b"*?[]\\")


class RedisKeys:
    """The keys of one online store, under the hash tag ``{prefix}``."""

    def __init__(self, prefix: str) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ConfigError(
                f"Redis key prefix {prefix!r} must be a non-empty string without braces"
                " (it becomes the hash tag {prefix} of every key)"
            )
        self.prefix = prefix
        self.tag = b"{" + prefix.encode() + b"}"
        self.marks = self.tag + b":m"
        self.tables = self.tag + b":t"
        self.counter = self.tag + b":n"
        self.lease = self.tag + b":l"
        self.garbage = self.tag + b":g"
        self.filling = self.tag + b":f"

    def space_prefix(self, space: bytes) -> bytes:
        """The start of every entity key in key space ``space``."""
        return self.tag + b":" + space + b":"

    def entity_keys(self, space: bytes, keys: list[EntityKey]) -> list[bytes]:
        """The Redis keys of ``keys`` in key space ``space``, in order."""
        start = self.space_prefix(space)
        return [start + entity_bytes(key) for key in keys]

    def space_pattern(self, space: bytes) -> bytes:
        """A SCAN pattern matching exactly the entity keys of ``space``."""
        return _glob_escaped(self.space_prefix(space)) + b"*"

    def every_key_pattern(self) -> bytes:
        """A SCAN pattern matching every key of this store (tests, reports)."""
        return _glob_escaped(self.tag) + b"*"


def _glob_escaped(text: bytes) -> bytes:
    escaped = bytearray()
    for byte in text:
        if byte in _GLOB_SPECIALS:
            escaped.append(ord("\\"))
        escaped.append(byte)
    return bytes(escaped)


def entity_bytes(key: EntityKey) -> bytes:
    """An entity key as it ends a Redis key: a type letter, then the key."""
    if isinstance(key, str):
        return b"s" + key.encode("utf-8", "surrogatepass")
    return b"i%d" % key
