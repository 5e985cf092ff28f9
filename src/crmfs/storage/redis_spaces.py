"""Key spaces of the Redis online store: which one holds a table, new ones, old ones deleted.

A table's entity states live in a key space (a number in their keys, see ``redis_keys``).
``{p}:t`` points each table at its space; clients keep what they saw and the scripts check
it, so a client that missed a replacement looks the table up again instead of writing into
a space no table points at any more. A replacement fills a fresh space (noted in ``{p}:f``
with its start time) and switches the table to it in one step; replaced and dropped spaces
go to ``{p}:g`` and are deleted by ``collect`` (SCAN and UNLINK, which frees memory in a
background thread of Redis) after the switch, so readers never wait for a deletion. A
space whose filling stopped (a process killed during a backfill) is deleted by a later
``collect`` once it is older than ``ABANDONED_AFTER_S``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from typing import cast

from crmfs.storage.ports import EntityKey
from crmfs.storage.redis_connection import RedisConnection
from crmfs.storage.redis_keys import RedisKeys
from crmfs.storage.redis_scripts import ABANDON_FILL, ENSURE_TABLES, FILL, RESERVE_SPACE

# A backfill fills a space at tens of thousands of states a second: one still unswitched after
# an hour was left by a process that stopped.
ABANDONED_AFTER_S = 3600
FILL_CHUNK = 5_000  # states per script call: each call holds Redis for a few milliseconds
_DELETE_CHUNK = 1_000


class KeySpaces:
    """The key space of each table, as this client last saw it, and the spaces' lifecycle."""

    def __init__(self, redis: RedisConnection, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._seen: dict[str, bytes] = {}
        self._ensure = redis.script(ENSURE_TABLES)
        self._reserve = redis.script(RESERVE_SPACE)
        self._fill = redis.script(FILL)
        self._abandon = redis.script(ABANDON_FILL)

    def known(self, table: str) -> bytes | None:
        """The space this client last saw for ``table`` (None: not looked up yet)."""
        return self._seen.get(table)

    def saw(self, table: str, space: bytes | None) -> None:
        if space is None:
            self._seen.pop(table, None)
        else:
            self._seen[table] = space

    def forget(self, tables: Sequence[str]) -> None:
        for table in tables:
            self._seen.pop(table, None)

    def look_up(self, table: str) -> bytes | None:
        """The table's space now (None: no such table)."""
        client = self._redis.client
        space = cast(
            "bytes | None",
            self._redis.call("online store read", lambda: client.hget(self._keys.tables, table)),
        )
        self.saw(table, space)
        return space

    def of_tables(self, tables: Sequence[str]) -> list[bytes]:
        """The space of each table, created where a table has none (one round trip for all
        the tables this client has not seen)."""
        missing = [table for table in tables if table not in self._seen]
        if missing:
            spaces = self._redis.run(
                "online store write", self._ensure, [self._keys.tables, self._keys.counter], missing
            )
            self._seen.update(zip(missing, spaces, strict=True))
        return [self._seen[table] for table in tables]

    def reserve(self) -> tuple[bytes, int]:
        """A new space to fill, and the time it was noted as being filled since."""
        started = int(time.time())
        space: bytes = self._redis.run(
            "table replacement",
            self._reserve,
            [self._keys.counter, self._keys.filling],
            [started],
        )
        return space, started

    def fill(self, space: bytes, rows: Sequence[tuple[EntityKey, bytes]], ttl_ms: int) -> None:
        """Store ``rows`` in a space no table points at yet (in chunks: none is visible)."""
        for start in range(0, len(rows), FILL_CHUNK):
            chunk = rows[start : start + FILL_CHUNK]
            keys = self._keys.entity_keys(space, [key for key, _ in chunk])
            self._redis.run(
                "table replacement", self._fill, keys, [ttl_ms, *(blob for _, blob in chunk)]
            )

    def abandon(self, space: bytes, started: int) -> None:
        """Give up a space being filled since ``started`` (to be collected)."""
        self._redis.run(
            "table replacement",
            self._abandon,
            [self._keys.filling, self._keys.garbage],
            [space, started],
        )

    def collect(self) -> int:
        """Delete the keys of replaced, dropped and abandoned spaces; how many keys."""
        client = self._redis.client
        filling = cast(
            "dict[bytes, bytes]",
            self._redis.call("online store cleanup", lambda: client.hgetall(self._keys.filling)),
        )
        limit = time.time() - ABANDONED_AFTER_S
        for space, started in filling.items():
            if int(started) < limit:
                self.abandon(space, int(started))
        garbage = cast(
            "set[bytes]",
            self._redis.call("online store cleanup", lambda: client.smembers(self._keys.garbage)),
        )
        return sum(
            self._redis.call("online store cleanup", partial(self._delete_space, space))
            for space in sorted(garbage)
        )

    def _delete_space(self, space: bytes) -> int:
        client = self._redis.client
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=self._keys.space_pattern(space), count=_DELETE_CHUNK):
            batch.append(key)
            if len(batch) >= _DELETE_CHUNK:
                deleted += client.unlink(*batch)
                batch = []
        if batch:
            deleted += client.unlink(*batch)
        client.srem(self._keys.garbage, space)
        return deleted
