"""The embedded online store: one SQLite file in the project folder.

Each online table (a view version) is its own SQLite table ``state__<table>`` keyed by the
entity key. Blobs this process has read or written are kept in memory and trusted only
while no other connection has committed since (SQLite's ``PRAGMA data_version`` tells):
a write, a backfill or a drop by another process empties the cache before the next read.
The cache is filled only after a commit succeeds, so a crash can lose it but never
make it disagree with the file. Threads share the store: a write holds the process lock from
``BEGIN`` until the cache has its blobs, and a read holds it too, so no thread reads blobs
older than a watermark it has seen, nor another thread's uncommitted rows.
"""

from __future__ import annotations

import operator
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from pathlib import Path

from crmfs.errors import StorageError
from crmfs.storage.ports import EntityKey, Watermark, WatermarkMoved
from crmfs.storage.sqlite_change_feed import SqliteChangeFeed
from crmfs.storage.sqlite_checkpoint import BackgroundCheckpointer
from crmfs.storage.sqlite_tx import WriteTransaction, write_transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS watermark (
    name TEXT PRIMARY KEY, seq INTEGER NOT NULL, ingested_at INTEGER NOT NULL
) STRICT;
"""
_PREFIX = "state__"
_MAX_PARAMS = 30_000  # below SQLite's default limit of 32,766 bound parameters
_PAGE_CACHE_KIB = 65_536
# Reads map the database file instead of copying pages in with a system call each: a commit by
# another connection (the fold worker's) empties the page cache, and reads of entities not in
# the blob cache then cost a third less (address space, not memory: pages are the OS's cache).
_MMAP_BYTES = 1 << 30
# A background thread checkpoints the WAL once this many pages may have been written (40 MB of
# WAL: pages rewritten by several batches are copied once); SQLite's automatic checkpoint, in
# the committing thread, only if the WAL grows to several times that (see sqlite_checkpoint).
_CHECKPOINT_PAGES = 10_000
_AUTOCHECKPOINT_PAGES = 4 * _CHECKPOINT_PAGES
_BLOB_CACHE_BYTES = 256 * 1024 * 1024
_ENTRY_BYTES = 100  # a cache entry's own size, roughly: key, dict slot, bytes header
_ABSENT = b""  # cached: the key has no state (real blobs are never empty)

BlobCache = dict[str, dict[EntityKey, bytes]]
_first = operator.itemgetter(0)


def _quoted(table: str) -> str:
    return '"' + (_PREFIX + table).replace('"', '""') + '"'


class SqliteOnlineStore:
    """Online state in SQLite (WAL): durable, readable by other processes while written."""

    def __init__(self, path: Path, cache_bytes: int = _BLOB_CACHE_BYTES) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # The online store is rebuilt from the event log after a crash (the watermark
            # says from where), so it need not fsync on every commit.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=60000")
            self._db.execute(f"PRAGMA cache_size=-{_PAGE_CACHE_KIB}")
            self._db.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            self._db.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the online store at {path}: {exc}") from exc
        self._lock = threading.RLock()
        self._checkpointer = BackgroundCheckpointer(path, _CHECKPOINT_PAGES)
        self._cache_limit = cache_bytes
        self._cache: BlobCache = {}
        self._cached_bytes = 0
        self._version = self._data_version()
        self._watermark: Watermark | None = None  # as of self._version, or unknown
        # The blobs of the open staged write (only its thread reads while it is open).
        self._staged: dict[str, dict[EntityKey, bytes]] | None = None
        # Only a store of the old shared-table layout needs a write here: a fold worker opens
        # the store while its parent holds SQLite's write lock (``begin_write``).
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'state'").fetchone():
            with self._transaction() as db:
                _move_shared_table(db)

    # -- the blob cache ----------------------------------------------------------------

    def _data_version(self) -> int:
        version: int = self._db.execute("PRAGMA data_version").fetchone()[0]
        return version

    def _current_cache(self, version: int) -> BlobCache:
        """The cache, emptied if another connection committed since it was filled."""
        if version != self._version:
            self._cache = {}
            self._cached_bytes = 0
            self._watermark = None
            self._version = version
        return self._cache

    def _remember(self, table: str, rows: Mapping[EntityKey, bytes]) -> None:
        # An upper bound: blobs that replace cached ones are counted in full (looking each
        # old one up costs more than the write's other bookkeeping), and the true size is
        # measured when the bound goes over budget.
        self._cached_bytes += sum(map(len, rows.values())) + _ENTRY_BYTES * len(rows)
        self._cache.setdefault(table, {}).update(rows)
        if self._cached_bytes > self._cache_limit:
            self._cached_bytes = self._measured_bytes()
            if self._cached_bytes > self._cache_limit:
                self._cache = {}  # over budget: start again rather than track recency
                self._cached_bytes = 0

    def _measured_bytes(self) -> int:
        """The cache's size: its blobs, and an entry's own size for each key (absent too)."""
        return sum(
            sum(map(len, blobs.values())) + _ENTRY_BYTES * len(blobs)
            for blobs in self._cache.values()
        )

    # -- reads and writes --------------------------------------------------------------

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db, self._lock, "online store write")

    def read(self, table: str, keys: Sequence[EntityKey]) -> list[bytes | None]:
        with self._lock:
            blobs = self._read(table, keys)
            staged = self._staged.get(table) if self._staged else None
            if staged:  # the writing thread reads its own staged blobs
                return [staged.get(key, blob) for key, blob in zip(keys, blobs, strict=True)]
            return blobs

    def read_views(
        self, reads: Sequence[tuple[str, Sequence[EntityKey]]]
    ) -> tuple[Watermark, list[list[bytes | None]]]:
        with self._lock:
            return self.watermark(), [self.read(table, keys) for table, keys in reads]

    def _read(self, table: str, keys: Sequence[EntityKey]) -> list[bytes | None]:
        cached = self._current_cache(self._data_version()).get(table, {})
        hits = list(map(cached.get, keys))
        if None not in hits:  # all cached: the usual case after a while
            return hits if _ABSENT not in hits else [blob or None for blob in hits]
        misses = [key for key in keys if key not in cached]
        found = dict.fromkeys(misses, _ABSENT)
        found.update(self._select(table, misses))
        self._remember(table, found)
        return [cached.get(key) or found.get(key) or None for key in keys]

    def _select(self, table: str, keys: list[EntityKey]) -> list[tuple[EntityKey, bytes]]:
        rows: list[tuple[EntityKey, bytes]] = []
        try:
            for start in range(0, len(keys), _MAX_PARAMS):
                chunk = keys[start : start + _MAX_PARAMS]
                marks = ",".join("?" * len(chunk))
                rows += self._db.execute(
                    f"SELECT key, value FROM {_quoted(table)} WHERE key IN ({marks})", chunk
                ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise StorageError(f"online store read failed: {exc}") from exc
        return rows

    def write(
        self,
        updates: Mapping[str, Mapping[EntityKey, bytes]],
        watermark: Watermark | None = None,
        expected: Watermark | None = None,
    ) -> None:
        staged = self.begin_write(expected)
        try:
            staged.add(updates)
        except BaseException:
            staged.abort()
            raise
        staged.commit(watermark)

    def begin_write(self, expected: Watermark | None = None) -> SqliteStagedWrite:
        """A write whose blobs go in as they are ready (``add``) and become visible together,
        with the watermark, on ``commit``; ``abort`` drops them.

        Raises ``WatermarkMoved`` (and writes nothing) if ``expected`` is given and the stored
        watermark is another. From here to ``commit`` or ``abort`` the calling thread holds
        the store (other threads' reads and writes wait) and SQLite's write lock; the
        thread's own reads see the blobs added so far.
        """
        # The store's lock is taken here as well as by the transaction: the transaction lets
        # it go at its end, this once the cache has the committed blobs (``_end_write``).
        self._lock.acquire()
        try:
            transaction = WriteTransaction(self._db, self._lock, "online store write")
        except BaseException:
            self._lock.release()
            raise
        try:
            self._current_cache(self._data_version())
            if expected is not None:
                current = self.watermark()
                if current != expected:
                    raise WatermarkMoved(expected, current)
        except BaseException as exc:
            self._end_write(None)
            error = transaction.failed(exc)
            if error is exc:
                raise
            raise error from exc
        return SqliteStagedWrite(self, transaction)

    def _end_write(self, written: dict[str, dict[EntityKey, bytes]] | None) -> None:
        """After a staged write's commit (``written``: its blobs) or rollback (None): lets
        go of the store's lock that ``begin_write`` took."""
        try:
            self._watermark = None  # read again after this write, committed or not
            self._staged = None
            if written is not None:
                for table, rows in written.items():
                    self._remember(table, rows)
        finally:
            self._lock.release()
        if written is not None:  # a row may dirty a leaf page, and the watermark one more
            self._checkpointer.written(1 + sum(len(rows) for rows in written.values()))

    def watermark(self) -> Watermark:
        """The last applied log position; kept between calls until a commit may change it
        (a write through this store, or any commit of another connection)."""
        with self._lock:  # not while another thread's transaction is open on the connection
            self._current_cache(self._data_version())
            if self._watermark is None:
                row = self._db.execute(
                    "SELECT seq, ingested_at FROM watermark WHERE name = 'stream'"
                ).fetchone()
                self._watermark = Watermark() if row is None else Watermark(row[0], row[1])
            return self._watermark

    def identity_mark(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT seq FROM watermark WHERE name = 'identity'").fetchone()
            return 0 if row is None else int(row[0])

    def apply_identity(
        self, updates: Mapping[str, Mapping[EntityKey, bytes | None]], identity_seq: int
    ) -> None:
        with self._lock:
            with self._transaction() as db:
                self._current_cache(self._data_version())
                for table, rows in updates.items():
                    _create(db, table)
                    kept = {k: v for k, v in rows.items() if v is not None}
                    gone = [(k,) for k, v in rows.items() if v is None]
                    db.executemany(_upsert(table), _in_key_order(kept))
                    db.executemany(f"DELETE FROM {_quoted(table)} WHERE key = ?", gone)
                db.execute(
                    "INSERT OR REPLACE INTO watermark (name, seq, ingested_at)"
                    " VALUES ('identity', ?, 0)",
                    (identity_seq,),
                )
            for table, rows in updates.items():
                self._remember(table, {k: v or _ABSENT for k, v in rows.items()})

    def replace_table(
        self, table: str, rows: Mapping[EntityKey, bytes], expected: Watermark
    ) -> None:
        with self._lock:
            with self._transaction() as db:
                current = self.watermark()  # also empties the cache if another commit came
                if current != expected:
                    raise WatermarkMoved(expected, current)
                # Overwrite in place and delete the rest: about half the time of dropping the
                # table (SQLite frees each of its pages) and filling a new one. The keys to
                # delete are found here: few, and cheaper than SQL's NOT IN over every key.
                _create(db, table)
                stale = [
                    (key,)
                    for (key,) in db.execute(f"SELECT key FROM {_quoted(table)}")
                    if key not in rows
                ]
                db.executemany(f"DELETE FROM {_quoted(table)} WHERE key = ?", stale)
                db.executemany(_upsert(table), _in_key_order(rows))
            self._cache.pop(table, None)

    def drop_table(self, table: str) -> None:
        with self._lock:
            with self._transaction() as db:
                self._current_cache(self._data_version())
                db.execute(f"DROP TABLE IF EXISTS {_quoted(table)}")
            self._cache.pop(table, None)

    def tables(self) -> dict[str, int]:
        """Rows per table, for reports."""
        names = [
            name[len(_PREFIX) :]
            for (name,) in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'state\\_\\_%'"
                " ESCAPE '\\' ORDER BY name"
            )
        ]
        return {
            name: self._db.execute(f"SELECT count(*) FROM {_quoted(name)}").fetchone()[0]
            for name in names
        }

    def change_feed(self) -> SqliteChangeFeed:
        """A feed of the commits to this file by any connection (not started; its caller
        closes it). SQLite cannot say which keys a commit wrote: every notice is ``None``.

        A cache in front of this store gains nothing from it: the store's own blob cache
        already serves hot entities from memory, and checks ``PRAGMA data_version`` at every
        read, so it sees another process's commit at once instead of a poll later.
        """
        return SqliteChangeFeed(self.path)

    def close(self) -> None:
        self._checkpointer.close()
        self._db.close()


class SqliteStagedWrite:
    """An open write of a ``SqliteOnlineStore`` (``SqliteOnlineStore.begin_write``)."""

    def __init__(self, store: SqliteOnlineStore, transaction: WriteTransaction) -> None:
        self._store = store
        self._transaction = transaction
        self._written: dict[str, dict[EntityKey, bytes]] = {}
        store._staged = self._written

    def add(self, updates: Mapping[str, Mapping[EntityKey, bytes]]) -> None:
        """Write these blobs now, in the open transaction (a key written twice: the last)."""
        if not self._transaction.open:
            raise StorageError("online store write already committed or aborted")
        db = self._transaction.db
        try:
            for table, rows in updates.items():
                _create(db, table)
                db.executemany(_upsert(table), _in_key_order(rows))
                self._written.setdefault(table, {}).update(rows)
        except sqlite3.Error as exc:
            raise StorageError(f"online store write failed: {exc}") from exc

    def commit(self, watermark: Watermark | None = None) -> None:
        """Make every blob added visible, and move the watermark, in one step."""
        if not self._transaction.open:
            raise StorageError("online store write already committed or aborted")
        try:
            if watermark is not None:
                _set_watermark(self._transaction.db, watermark)
            self._transaction.commit()  # rolled back if it fails
        except BaseException as exc:
            self._store._end_write(None)
            error = self._transaction.failed(exc)
            if error is exc:
                raise
            raise error from exc
        self._store._end_write(self._written)

    def abort(self) -> None:
        """Drop every blob added; the store is as before ``begin_write``. Idempotent."""
        if not self._transaction.open:
            return
        try:
            self._transaction.rollback()
        finally:
            self._store._end_write(None)


def _create(db: sqlite3.Connection, table: str) -> None:
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {_quoted(table)}"
        " (key ANY PRIMARY KEY NOT NULL, value BLOB NOT NULL) STRICT, WITHOUT ROWID"
    )


def _upsert(table: str) -> str:
    """Insert or overwrite a row: an update in place, cheaper than ``INSERT OR REPLACE``'s
    delete and insert in a table without rowid."""
    return (
        f"INSERT INTO {_quoted(table)} (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )


def _in_key_order(rows: Mapping[EntityKey, bytes]) -> list[tuple[EntityKey, bytes]]:
    """Rows sorted by key: neighbouring writes touch neighbouring B-tree pages."""
    items = list(rows.items())
    with suppress(TypeError):  # keys of mixed types: any order is correct, sorted is faster
        items.sort(key=_first)  # keys are unique: no need to compare blobs
    return items


def _move_shared_table(db: sqlite3.Connection) -> None:
    """Move rows from the single ``state`` table of earlier versions to per-table tables."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'state'").fetchone() is None:
        return
    for (table,) in db.execute("SELECT DISTINCT tbl FROM state").fetchall():
        _create(db, table)
        db.execute(
            f"INSERT INTO {_quoted(table)} SELECT key, value FROM state WHERE tbl = ?", (table,)
        )
    db.execute("DROP TABLE state")


def _set_watermark(db: sqlite3.Connection, watermark: Watermark) -> None:
    db.execute(
        "INSERT OR REPLACE INTO watermark (name, seq, ingested_at) VALUES ('stream', ?, ?)",
        (watermark.seq, watermark.ingested_at),
    )
