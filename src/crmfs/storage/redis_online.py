"""The Redis online store: entity states as Redis strings, written by atomic Lua scripts.

Each entity's state of a table is one Redis string (its msgpack blob, as in the SQLite
store), under a short key (``redis_keys``). A read is one round trip: a MULTI/EXEC of
``HGET`` (the table's key space, to notice a replacement) and ``MGET`` of the keys. Every
write (the blobs of several tables, the watermark, the identity mark) is one Lua script
that first checks the write lease, the expected watermark and the tables' key spaces, so
the check and the write are one atomic step and a write lands whole or not at all.

Staged writes (``begin_write``) keep their blobs in this process until ``commit``, which
writes them like ``write``. While one is open it holds the store's *write lease*
(``{p}:l``, a token with a TTL, renewed as blobs are added): every other writer, in this
process or another, waits for it to end, as with SQLite's write lock; readers do not wait
and see the store as it was. If the holder dies, the lease expires after
``write_lease_s``; a writer that waited twice that long gives up with a ``StorageError``.

Entity keys of a view get a TTL (``key_ttl``, seconds by table, from the view's TTL and
windows, see ``crmfs.backends``), renewed by each write of the entity: Redis forgets an
entity nothing has happened to for that long, whose features would all be empty or past
their TTL anyway.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from crmfs.errors import StorageError
from crmfs.storage.ports import EntityKey, Watermark, WatermarkMoved
from crmfs.storage.redis_connection import RedisConnection, RedisSettings
from crmfs.storage.redis_keys import RedisKeys
from crmfs.storage.redis_scripts import (
    DROP_TABLE,
    RELEASE_LEASE,
    RENEW_LEASE,
    SWITCH_TABLE,
    TAKE_LEASE,
    WRITE,
)
from crmfs.storage.redis_spaces import KeySpaces

if TYPE_CHECKING:
    from crmfs.storage.redis_invalidation import RedisChangeFeed

KeyTtl = Callable[[str], int | None]
Blobs = Mapping[str, Mapping[EntityKey, bytes | None]]
_MGET_CHUNK = 10_000  # keys per MGET inside a read's one transaction
_MAX_STALE_RETRIES = 10  # tables replaced under a read or a write this many times in a row
_log = logging.getLogger(__name__)


class RedisOnlineStore:
    """Online state in Redis, shared by every process of a project.

    ``prefix`` is the hash tag of every key (the project name by default); ``key_ttl`` gives
    the key TTL in seconds of a table's entities (None or absent: no TTL).
    """

    def __init__(
        self,
        settings: RedisSettings,
        prefix: str,
        key_ttl: KeyTtl | None = None,
        write_lease_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self.keys = RedisKeys(prefix)
        self._redis = RedisConnection(settings)
        self._spaces = KeySpaces(self._redis, self.keys)
        self._key_ttl = key_ttl
        self.write_lease_s = write_lease_s
        self._local = threading.local()  # the staged write this thread has open, if any
        self._write = self._redis.script(WRITE)
        self._switch = self._redis.script(SWITCH_TABLE)
        self._drop = self._redis.script(DROP_TABLE)
        self._take_lease = self._redis.script(TAKE_LEASE)
        self._renew_lease = self._redis.script(RENEW_LEASE)
        self._release_lease = self._redis.script(RELEASE_LEASE)

    # -- reads -------------------------------------------------------------------------

    def read(self, table: str, keys: Sequence[EntityKey]) -> list[bytes | None]:
        if not keys:
            return []
        blobs = self._read_committed(table, list(keys))
        staged = self._staged()
        if staged is not None:
            staged.overlay(table, keys, blobs)
        return blobs

    def _read_committed(self, table: str, keys: list[EntityKey]) -> list[bytes | None]:
        space = self._spaces.known(table) or self._spaces.look_up(table)
        for _ in range(_MAX_STALE_RETRIES):
            if space is None:
                return [None] * len(keys)
            names = self.keys.entity_keys(space, keys)
            current, blobs = self._redis.call(
                "online store read", partial(self._transaction_read, table, names)
            )
            if current == space:
                return blobs
            self._spaces.saw(table, current)  # replaced or dropped since last seen
            space = current
        raise StorageError(f"online store read of {table!r}: the table keeps being replaced")

    def _transaction_read(
        self, table: str, names: list[bytes]
    ) -> tuple[bytes | None, list[bytes | None]]:
        pipe = self._redis.client.pipeline(transaction=True)
        pipe.hget(self.keys.tables, table)
        for start in range(0, len(names), _MGET_CHUNK):
            pipe.mget(names[start : start + _MGET_CHUNK])
        current, *chunks = pipe.execute()
        return current, [blob for chunk in chunks for blob in chunk]

    def read_views(
        self, reads: Sequence[tuple[str, Sequence[EntityKey]]]
    ) -> tuple[Watermark, list[list[bytes | None]]]:
        """The watermark and every table's blobs in one MULTI/EXEC: ``HMGET`` of the marks,
        then per table ``HGET`` of its key space and ``MGET`` of its keys."""
        if self._staged() is not None:  # the writing thread: its staged blobs over these
            return self.watermark(), [self.read(table, keys) for table, keys in reads]
        spaces = [self._spaces.known(table) for table, _ in reads]
        for _ in range(_MAX_STALE_RETRIES):
            names = [
                [] if space is None else self.keys.entity_keys(space, list(keys))
                for space, (_, keys) in zip(spaces, reads, strict=True)
            ]
            marks, found = self._redis.call(
                "online store read", partial(self._transaction_views, reads, names)
            )
            current = [space for space, _ in found]
            if current == spaces:
                seq, at = marks
                blobs_of: list[list[bytes | None]] = [
                    blobs if space is not None else [None] * len(keys)
                    for space, (_, keys), (_, blobs) in zip(spaces, reads, found, strict=True)
                ]
                return Watermark(int(seq or 0), int(at or 0)), blobs_of
            for (table, _), space in zip(reads, current, strict=True):
                self._spaces.saw(table, space)  # replaced, dropped or created since
            spaces = current
        raise StorageError("online store read: its tables keep being replaced")

    def _transaction_views(
        self, reads: Sequence[tuple[str, Sequence[EntityKey]]], names: list[list[bytes]]
    ) -> tuple[list[Any], list[tuple[bytes | None, list[bytes | None]]]]:
        pipe = self._redis.client.pipeline(transaction=True)
        pipe.hmget(self.keys.marks, ["s", "a"])
        chunks_of = []
        for (table, _), table_names in zip(reads, names, strict=True):
            pipe.hget(self.keys.tables, table)
            starts = range(0, len(table_names), _MGET_CHUNK)
            for start in starts:
                pipe.mget(table_names[start : start + _MGET_CHUNK])
            chunks_of.append(len(starts))
        marks, *results = pipe.execute()
        found = []
        position = 0
        for chunks in chunks_of:
            current = results[position]
            blobs = [b for chunk in results[position + 1 : position + 1 + chunks] for b in chunk]
            found.append((current, blobs))
            position += 1 + chunks
        return marks, found

    def watermark(self) -> Watermark:
        client = self._redis.client
        seq, at = self._redis.call(
            "watermark read", lambda: client.hmget(self.keys.marks, ["s", "a"])
        )
        return Watermark(int(seq or 0), int(at or 0))

    def identity_mark(self) -> int:
        client = self._redis.client
        mark = self._redis.call("identity mark read", lambda: client.hget(self.keys.marks, "i"))
        return int(mark or 0)

    # -- writes ------------------------------------------------------------------------

    def write(
        self,
        updates: Mapping[str, Mapping[EntityKey, bytes]],
        watermark: Watermark | None = None,
        expected: Watermark | None = None,
    ) -> None:
        self._refuse_inside_staged("write")
        self._write_blobs(updates, watermark, expected, None, "")

    def apply_identity(
        self, updates: Mapping[str, Mapping[EntityKey, bytes | None]], identity_seq: int
    ) -> None:
        self._refuse_inside_staged("apply_identity")
        self._write_blobs(updates, None, None, identity_seq, "")

    def _write_blobs(
        self,
        updates: Blobs,
        watermark: Watermark | None,
        expected: Watermark | None,
        identity_seq: int | None,
        token: str,
    ) -> None:
        """One WRITE script: every blob (None deletes), the marks, checked as documented."""
        tables = list(updates)
        head = [
            _write_id(),
            token,
            *_mark_args(expected),
            *_mark_args(watermark),
            "" if identity_seq is None else identity_seq,
        ]
        waited = _LeaseWait(self)
        stale = 0
        while stale < _MAX_STALE_RETRIES:
            keys = [self.keys.marks, self.keys.tables, self.keys.lease]
            tail: list[Any] = [len(tables)]
            values: list[bytes] = []
            for table, space in zip(tables, self._spaces.of_tables(tables), strict=True):
                rows = updates[table]
                tail += [table, space, self._ttl_ms(table), len(rows)]
                keys += self.keys.entity_keys(space, list(rows))
                values += [blob or b"" for blob in rows.values()]
            answer = self._redis.run("online store write", self._write, keys, head + tail + values)
            status = answer[0]
            if status in (b"ok", b"done"):
                return
            if status == b"moved":
                assert expected is not None  # only a write that names one is checked
                raise WatermarkMoved(expected, Watermark(int(answer[1]), int(answer[2])))
            if status == b"busy":
                waited.wait()
            else:  # stale: a table was replaced or dropped since this client saw it
                self._spaces.forget(tables)
                stale += 1
        raise StorageError("online store write: its tables keep being replaced; retry it")

    def begin_write(self, expected: Watermark | None = None) -> RedisStagedWrite:
        """A write whose blobs are kept here as they are added and stored, with the
        watermark, in one step on ``commit``; ``abort`` drops them.

        Raises ``WatermarkMoved`` if ``expected`` is given and the stored watermark is
        another. Takes the write lease (waiting for another writer's to end): until
        ``commit`` or ``abort`` other writers wait; readers see the store as before, except
        this thread, whose reads see the blobs added so far.
        """
        self._refuse_inside_staged("begin_write")
        token = _write_id()
        waited = _LeaseWait(self)
        while True:
            answer = self._redis.run(
                "online store write",
                self._take_lease,
                [self.keys.lease, self.keys.marks],
                [token, self._lease_ms()],
            )
            if answer[0] == b"ok":
                break
            waited.wait()
        current = Watermark(int(answer[1]), int(answer[2]))
        staged = RedisStagedWrite(self, token, current)
        if expected is not None and current != expected:
            staged.abort()
            raise WatermarkMoved(expected, current)
        self._local.staged = staged
        return staged

    def replace_table(
        self, table: str, rows: Mapping[EntityKey, bytes], expected: Watermark
    ) -> None:
        """Fill a new key space with ``rows`` (invisible meanwhile), then point the table at
        it in one step, unless the watermark moved; the old space is deleted after."""
        self._refuse_inside_staged("replace_table")
        space, started = self._spaces.reserve()
        try:
            self._spaces.fill(space, list(rows.items()), self._ttl_ms(table))
            waited = _LeaseWait(self)
            while True:
                answer = self._redis.run(
                    "table replacement",
                    self._switch,
                    [*self._guarded_keys(), self.keys.garbage, self.keys.filling],
                    [_write_id(), "", *_mark_args(expected), table, space],
                )
                status = answer[0]
                if status in (b"ok", b"done"):
                    break
                if status == b"moved":
                    raise WatermarkMoved(expected, Watermark(int(answer[1]), int(answer[2])))
                if status == b"lost":
                    raise StorageError(
                        f"replacing table {table!r} took over an hour: its new key space was"
                        " taken for abandoned and deleted; run it again"
                    )
                waited.wait()
        except BaseException:
            self._give_up(space, started)
            raise
        self._spaces.saw(table, space)
        self._spaces.collect()

    def _give_up(self, space: bytes, started: int) -> None:
        try:
            self._spaces.abandon(space, started)
            self._spaces.collect()
        except StorageError as exc:  # the space stays noted as filling: collected later
            _log.warning("could not delete an unused key space yet: %s", exc)

    def drop_table(self, table: str) -> None:
        self._refuse_inside_staged("drop_table")
        waited = _LeaseWait(self)
        while True:
            answer = self._redis.run(
                "table drop",
                self._drop,
                [*self._guarded_keys(), self.keys.garbage],
                [_write_id(), "", "", "", table],
            )
            if answer[0] in (b"ok", b"done"):
                break
            waited.wait()
        self._spaces.saw(table, None)
        self._spaces.collect()

    def change_feed(self) -> RedisChangeFeed:
        """A feed of every write to this store, by any process, from Redis's key tracking
        (``redis_invalidation``): not started; its caller closes it."""
        from crmfs.storage.redis_invalidation import RedisChangeFeed  # imports redis itself

        return RedisChangeFeed(self.settings, self.keys)

    def collect_garbage(self) -> int:
        """Delete the keys of replaced and dropped tables now; how many keys."""
        return self._spaces.collect()

    def close(self) -> None:
        self._redis.close()

    # -- helpers -----------------------------------------------------------------------

    def _guarded_keys(self) -> list[bytes]:
        return [self.keys.marks, self.keys.tables, self.keys.lease]

    def _ttl_ms(self, table: str) -> int:
        seconds = None if self._key_ttl is None else self._key_ttl(table)
        return 0 if seconds is None else seconds * 1000

    def _lease_ms(self) -> int:
        return max(1, int(self.write_lease_s * 1000))

    def _staged(self) -> RedisStagedWrite | None:
        staged: RedisStagedWrite | None = getattr(self._local, "staged", None)
        return staged if staged is not None and staged.open else None

    def _refuse_inside_staged(self, what: str) -> None:
        if self._staged() is not None:
            raise StorageError(
                f"online store {what} while this thread has a staged write open (it would"
                " wait for its own lease): commit or abort the staged write first"
            )

    def _renew(self, token: str) -> None:
        self._redis.run(
            "online store write", self._renew_lease, [self.keys.lease], [token, self._lease_ms()]
        )

    def _release(self, token: str) -> None:
        self._redis.run("online store write", self._release_lease, [self.keys.lease], [token])


class RedisStagedWrite:
    """An open write of a ``RedisOnlineStore`` (``RedisOnlineStore.begin_write``)."""

    def __init__(self, store: RedisOnlineStore, token: str, base: Watermark) -> None:
        self._store = store
        self._token = token
        self._base = base  # the watermark when the lease was taken
        self._blobs: dict[str, dict[EntityKey, bytes]] = {}
        self._renewed = time.monotonic()
        self.open = True

    def add(self, updates: Mapping[str, Mapping[EntityKey, bytes]]) -> None:
        """Keep these blobs for the commit (a key added twice: the last)."""
        if not self.open:
            raise StorageError("online store write already committed or aborted")
        for table, rows in updates.items():
            self._blobs.setdefault(table, {}).update(rows)
        if time.monotonic() - self._renewed > self._store.write_lease_s / 3:
            self._store._renew(self._token)
            self._renewed = time.monotonic()

    def overlay(self, table: str, keys: Sequence[EntityKey], blobs: list[bytes | None]) -> None:
        """Put the blobs added so far over ``blobs`` (read for ``keys``)."""
        added = self._blobs.get(table)
        if added:
            for index, key in enumerate(keys):
                if key in added:
                    blobs[index] = added[key]

    def commit(self, watermark: Watermark | None = None) -> None:
        """Store every blob added and the watermark in one step (and end the lease).

        Raises ``WatermarkMoved`` if the watermark moved since ``begin_write`` (possible only
        if the lease expired meanwhile); the write is ended either way.
        """
        if not self.open:
            raise StorageError("online store write already committed or aborted")
        self.open = False
        try:
            self._store._write_blobs(self._blobs, watermark, self._base, None, self._token)
        except BaseException:
            self._let_go()
            raise
        self._blobs = {}

    def abort(self) -> None:
        """Drop every blob added and end the lease. Idempotent."""
        if not self.open:
            return
        self.open = False
        self._blobs = {}
        self._let_go()

    def _let_go(self) -> None:
        try:
            self._store._release(self._token)
        except StorageError as exc:  # the lease expires by itself
            _log.warning("could not end the online store's write lease: %s", exc)


class _LeaseWait:
    """Waits of one writer for another's write lease: short sleeps, growing, up to twice
    the lease (a lease whose holder died expires within it)."""

    def __init__(self, store: RedisOnlineStore) -> None:
        self._store = store
        self._started = time.monotonic()
        self._pause = 0.001

    def wait(self) -> None:
        limit = 2 * self._store.write_lease_s
        waited = time.monotonic() - self._started
        if waited > limit:
            raise StorageError(
                f"online store write waited {waited:.1f} s for another writer's staged write"
                f" to end (the write lease {self._store.keys.lease!r}); is a process stuck"
                " in the middle of a write? Retry later"
            )
        time.sleep(self._pause)
        self._pause = min(self._pause * 2, 0.05)


def _write_id() -> str:
    return uuid.uuid4().hex


def _mark_args(mark: Watermark | None) -> tuple[str | int, str | int]:
    return ("", "") if mark is None else (mark.seq, mark.ingested_at)
