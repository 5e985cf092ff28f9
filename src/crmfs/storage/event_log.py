"""The append-only event log: Parquet segments plus a SQLite catalogue.

Layout in the project's data folder::

    log.db                         catalogue: segments, event ids, quarantine, counters
    segments/<source>/<id>.parquet one file per committed batch (compacted over time)

Compaction merges small segments into one and commits the swap in the catalogue; the files it
replaced stay on disk for a grace period (``compaction_grace_s``, ten minutes by default), so a
reader in another process that listed them just before, e.g. a DuckDB query, still reads them.
They are deleted by a later compaction or the next open once the grace period is over.

An append is one SQLite transaction (``synchronous=FULL``): the segment file is written,
fsynced and renamed into place first, then the catalogue rows that make it visible (its
segment row, its event ids, its quarantined records) commit together. A crash before the
commit leaves an orphan file that the next open deletes; after the commit the batch is
acknowledged and durable. ``(source, event_id)`` is a primary key, so a redelivered
event is recognised and dropped, also across crashes and retries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crmfs.errors import StorageError
from crmfs.storage.log_upkeep import BackgroundCompactor
from crmfs.storage.sqlite_json import json_array
from crmfs.storage.sqlite_tx import write_transaction

_log = logging.getLogger(__name__)
# Row groups of a compacted segment: readers decode a row group at a time, so bounded groups
# bound their memory (one group of 490k rows cost a 1M-row training set ~40 MB of peak).
_ROW_GROUP_ROWS = 65_536
EVENT_TIME = "_event_time_us"
INGESTED_AT = "_ingested_at_us"
SEQ = "_seq"
META_COLUMNS = (EVENT_TIME, INGESTED_AT, SEQ)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    source TEXT NOT NULL, file TEXT NOT NULL PRIMARY KEY, rows INTEGER NOT NULL,
    min_seq INTEGER NOT NULL, max_seq INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS event_ids (
    source TEXT NOT NULL, event_id ANY NOT NULL, PRIMARY KEY (source, event_id)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, quarantined_at INTEGER NOT NULL,
    field TEXT, reason TEXT NOT NULL, record TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS superseded (
    file TEXT NOT NULL PRIMARY KEY, superseded_at REAL NOT NULL
) STRICT;
"""
# Added after the first release: logs created before it get the column on open.
_QUARANTINE_KEY = """
CREATE UNIQUE INDEX IF NOT EXISTS quarantine_once ON quarantine (source, dedup_key);
"""
DEFAULT_COMPACTION_GRACE_S = 600.0  # readers listing files before a compaction finish in time
# Segments are merged a size tier at a time, once a tier holds more than _COMPACT_AFTER of
# one source's segments: single-event ingests make tiny segments whose merges stay cheap
# (no latency spike for them), and batch segments are merged rarely, many at once.
_COMPACT_AFTER = 48
_SEGMENT_TIERS = (1_000, 50_000)  # upper bounds (rows) of the tiers that get merged


@dataclass(frozen=True)
class Rejected:
    """A record the pipeline refused, kept with the reason."""

    field: str | None
    reason: str
    record: dict[str, Any]
    event_id: Any = None  # the record's event id, when it has a usable one

    def dedup_key(self) -> str:
        """Same key, same rejection: by (event id, reason), else by (whole record, reason)."""
        basis = (
            ["id", self.event_id, self.reason]
            if self.event_id is not None
            else ["record", self.record, self.reason]
        )
        text = json.dumps(basis, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class QuarantinedRecord:
    id: int
    source: str
    quarantined_at: int
    field: str | None
    reason: str
    record: dict[str, Any]


@dataclass(frozen=True)
class AppendResult:
    """What one append did; ``accepted`` carries the meta columns the log assigned."""

    accepted: pa.Table
    duplicates: int
    quarantined: int
    ingested_at: int
    already_quarantined: int = 0  # of ``quarantined``: rejected before, not stored again


class EventLog:
    """Durable, append-only, idempotent storage of validated events."""

    def __init__(
        self,
        root: Path,
        *,
        compaction_grace_s: float = DEFAULT_COMPACTION_GRACE_S,
        wall_clock: Callable[[], float] = time.time,
        background_compaction: bool = False,
    ) -> None:
        """``compaction_grace_s``: how long files replaced by a compaction stay readable.

        ``background_compaction``: an append that makes a compaction due returns at once
        and a thread compacts (see ``BackgroundCompactor``); otherwise the append compacts.
        """
        self.root = root
        self.compaction_grace_s = compaction_grace_s
        self._wall_clock = wall_clock
        self.segment_dir = root / "segments"
        try:
            self.segment_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                root / "log.db", check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged batch survives a crash
            self._db.execute("PRAGMA busy_timeout=60000")
            self._db.executescript(_SCHEMA)
            columns = [row[1] for row in self._db.execute("PRAGMA table_info(quarantine)")]
            if "dedup_key" not in columns:
                self._db.execute("ALTER TABLE quarantine ADD COLUMN dedup_key TEXT")
            self._db.executescript(_QUARANTINE_KEY)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the event log at {root}: {exc}") from exc
        self._lock = threading.Lock()
        self._remove_orphans()
        self._compactor = (
            BackgroundCompactor(self._connect, self._maybe_compact)
            if background_compaction
            else None
        )

    def _connect(self) -> sqlite3.Connection:
        """Another connection to the catalogue, for a compaction thread."""
        db = sqlite3.connect(self.root / "log.db", check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=60000")
        return db

    def _transaction(
        self, db: sqlite3.Connection | None = None
    ) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction on ``db`` (default: this log's connection) under the lock."""
        return write_transaction(self._db if db is None else db, self._lock, "event log write")

    def append(
        self,
        source: str,
        events: pa.Table,
        event_ids: Sequence[Any],
        rejected: Sequence[Rejected],
        now: int,
    ) -> AppendResult:
        """Append validated events (with ``_event_time_us``) and quarantine the rejected.

        ``event_ids`` are the events' ids in row order. Returns the accepted, new events
        with their ``_seq`` and ``_ingested_at_us``.
        """
        with self._transaction() as db:
            keep = self._claim_ids(db, source, event_ids)
            duplicates = len(event_ids) - len(keep)
            last_seq = self._counter(db, "seq")
            ingested_at = max(now, self._counter(db, "ingested_at"))
            accepted = events.take(pa.array(keep, type=pa.int64())) if duplicates else events
            count = accepted.num_rows
            accepted = _with_meta(accepted, last_seq, ingested_at)
            if count:
                file = self._write_segment(source, accepted)
                db.execute(
                    "INSERT INTO segments VALUES (?, ?, ?, ?, ?)",
                    (source, file, count, last_seq + 1, last_seq + count),
                )
                self._set_counter(db, "seq", last_seq + count)
                self._set_counter(db, "ingested_at", ingested_at)
            stored = self._quarantine(db, source, rejected, now)
        if count and self._compactor is not None:
            self._compactor.request(source)
        elif count:
            try:
                self._maybe_compact(source)
            except (StorageError, OSError, pa.ArrowException) as exc:
                # The append is committed; compaction is upkeep and is tried again later.
                _log.warning("event log compaction of %r failed: %s", source, exc)
        return AppendResult(
            accepted, duplicates, len(rejected), ingested_at, len(rejected) - stored
        )

    def predict(self, events: pa.Table, now: int) -> pa.Table:
        """What ``append(..., events, ..., now)`` would accept if it ran now and its events
        were all new: ``events`` with the meta columns the next append would give them.

        Lets a caller start work on a batch while it is appended; another process's append
        in between, or a duplicate, makes the real ``accepted`` differ (compare them).
        """
        counters = dict(
            self._db.execute(
                "SELECT name, value FROM counters WHERE name IN ('seq', 'ingested_at')"
            ).fetchall()
        )
        ingested_at = max(now, counters.get("ingested_at", 0))
        return _with_meta(events, counters.get("seq", 0), ingested_at)

    def _quarantine(
        self, db: sqlite3.Connection, source: str, rejected: Sequence[Rejected], now: int
    ) -> int:
        """Store rejected records not already quarantined; returns how many were new."""
        before = db.total_changes
        db.executemany(
            "INSERT OR IGNORE INTO quarantine"
            " (source, quarantined_at, field, reason, record, dedup_key) VALUES (?, ?, ?, ?, ?, ?)",
            (
                (source, now, r.field, r.reason, json.dumps(r.record, default=str), r.dedup_key())
                for r in rejected
            ),
        )
        return db.total_changes - before

    def _claim_ids(
        self, db: sqlite3.Connection, source: str, event_ids: Sequence[Any]
    ) -> list[int]:
        """Record the batch's unseen event ids; the row positions of their first occurrence.

        One ``INSERT OR IGNORE ... RETURNING`` both checks and records the ids (passed as
        one JSON array: ids are strings or ints): it returns the ids it inserted, the ones
        not seen before. It runs in the append's transaction, so a failed append records none.
        """
        unique = list(dict.fromkeys(event_ids))
        payload = json_array(unique)
        if payload is None:  # ids JSON cannot carry intact: bind them one by one
            new = {
                event_id
                for event_id in unique
                if db.execute(
                    "INSERT OR IGNORE INTO event_ids VALUES (?, ?)", (source, event_id)
                ).rowcount
            }
        else:
            # Usually every id is new: then one statement, whose rows are not fetched one by
            # one, says so. Otherwise it is undone and the ids it inserted are returned.
            before = db.total_changes
            db.execute("SAVEPOINT claim")
            db.execute(
                "INSERT OR IGNORE INTO event_ids SELECT ?, value FROM json_each(?)",
                (source, payload),
            )
            if db.total_changes - before == len(event_ids):
                db.execute("RELEASE claim")
                return list(range(len(event_ids)))
            db.execute("ROLLBACK TO claim")
            db.execute("RELEASE claim")
            cursor = db.execute(
                "INSERT OR IGNORE INTO event_ids SELECT ?, value FROM json_each(?)"
                " RETURNING event_id",
                (source, payload),
            )
            new = {row[0] for row in cursor}
        if len(new) == len(event_ids):
            return list(range(len(event_ids)))
        keep: list[int] = []
        for pos, event_id in enumerate(event_ids):
            if event_id in new:
                new.discard(event_id)  # later copies within the batch are duplicates
                keep.append(pos)
        return keep

    def _write_segment(self, source: str, table: pa.Table) -> str:
        folder = self.segment_dir / source
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{source}/{uuid.uuid4().hex}.parquet"
        final = self.segment_dir / name
        tmp = final.with_suffix(".tmp")
        pq.write_table(table, tmp, compression="zstd", row_group_size=_ROW_GROUP_ROWS)
        _fsync(tmp)
        os.replace(tmp, final)
        _fsync(folder)
        return name

    def _counter(self, db: sqlite3.Connection, name: str) -> int:
        row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def _set_counter(self, db: sqlite3.Connection, name: str, value: int) -> None:
        db.execute("INSERT OR REPLACE INTO counters VALUES (?, ?)", (name, value))

    # -- reading -------------------------------------------------------------------------

    def max_seq(self) -> int:
        return self._counter(self._db, "seq")

    def last_ingested_at(self) -> int:
        return self._counter(self._db, "ingested_at")

    def segment_files(self, source: str, after_seq: int = 0) -> list[Path]:
        """The source's segment files holding events with seq greater than ``after_seq``."""
        rows = self._db.execute(
            "SELECT file FROM segments WHERE source = ? AND max_seq > ? ORDER BY min_seq",
            (source, after_seq),
        ).fetchall()
        return [self.segment_dir / row[0] for row in rows]

    def sources(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT DISTINCT source FROM segments")]

    def read(self, source: str, after_seq: int = 0, upto_seq: int | None = None) -> pa.Table | None:
        """The source's events with ``after_seq < seq <= upto_seq``, in seq order."""
        files = self.segment_files(source, after_seq)
        if not files:
            return None
        table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
        mask = pc.greater(table[SEQ], after_seq)
        if upto_seq is not None:
            mask = pc.and_(mask, pc.less_equal(table[SEQ], upto_seq))
        table = table.filter(mask)
        return table.take(pc.sort_indices(table[SEQ]))

    def counts(self) -> dict[str, int]:
        """Events per source."""
        return dict(
            self._db.execute("SELECT source, sum(rows) FROM segments GROUP BY source").fetchall()
        )

    def quarantine(self, source: str | None = None, limit: int = 1000) -> list[QuarantinedRecord]:
        sql = "SELECT id, source, quarantined_at, field, reason, record FROM quarantine"
        params: tuple[Any, ...] = ()
        if source is not None:
            sql += " WHERE source = ?"
            params = (source,)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = self._db.execute(sql, (*params, limit)).fetchall()
        return [QuarantinedRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def quarantine_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM quarantine").fetchone()[0])

    # -- maintenance ---------------------------------------------------------------------

    def _maybe_compact(self, source: str, db: sqlite3.Connection | None = None) -> None:
        """Compact a tier of ``source``'s segments if one holds too many.

        With ``db`` (a compaction thread's own connection), the merged file is written
        before the write lock is taken (see ``_compact``).
        """
        rows = (
            (self._db if db is None else db)
            .execute("SELECT file, rows FROM segments WHERE source = ? ORDER BY min_seq", (source,))
            .fetchall()
        )
        lower = 0
        for upper in _SEGMENT_TIERS:
            tier = [file for file, count in rows if lower <= count < upper]
            if len(tier) > _COMPACT_AFTER:
                if db is None:
                    self.compact(source, tier)
                else:
                    self._compact(source, tier, db)
                return
            lower = upper

    def compact(self, source: str, files: list[str]) -> None:
        """Merge segments into one; readers see either the old files or the new one.

        If another process compacts some of ``files`` meanwhile, this one gives way.
        """
        self._compact(source, files)

    def _compact(
        self, source: str, files: list[str], connection: sqlite3.Connection | None = None
    ) -> None:
        """``compact`` on ``connection`` (default: this log's); on another connection, the
        merged file is written to a temporary name first, without the write lock, and only
        renamed into place under it (see ``_stage``)."""
        try:
            merged = pa.concat_tables(
                [pq.read_table(self.segment_dir / f) for f in files], promote_options="default"
            )
        except FileNotFoundError:
            return  # superseded and removed by another process's compaction
        if not _ascending(merged[SEQ]):  # usually in order already: files by seq
            merged = merged.take(pc.sort_indices(merged[SEQ]))
        staged = None if connection is None else self._stage(source, merged)
        try:
            self._swap(source, files, merged, staged, connection)
        finally:
            if staged is not None:
                staged[1].unlink(missing_ok=True)  # still there if the swap did not happen
        self.remove_superseded(connection)

    def _stage(self, source: str, table: pa.Table) -> tuple[str, Path]:
        """Write a segment under a temporary name (fsynced); its final name and its path.

        Written without the write lock: another process's orphan removal may delete it
        meanwhile, and then renaming it into place fails and the compaction is dropped.
        """
        folder = self.segment_dir / source
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{source}/{uuid.uuid4().hex}.parquet"
        tmp = (self.segment_dir / name).with_suffix(".tmp")
        pq.write_table(table, tmp, compression="zstd", row_group_size=_ROW_GROUP_ROWS)
        _fsync(tmp)
        return name, tmp

    def _swap(
        self,
        source: str,
        files: list[str],
        merged: pa.Table,
        staged: tuple[str, Path] | None,
        connection: sqlite3.Connection | None,
    ) -> None:
        """Replace ``files`` by the merged segment in the catalogue, in one transaction."""
        with self._transaction(connection) as db:
            (live,) = db.execute(
                "SELECT count(*) FROM segments WHERE source = ? "
                "AND file IN (SELECT value FROM json_each(?))",
                (source, json.dumps(files)),
            ).fetchone()
            if live != len(files):
                return  # another process merged some of them first: keep its merge
            # Put in place under the write lock, like appends, so that orphan removal in
            # another process never mistakes it for a crash's leftover.
            if staged is None:
                name = self._write_segment(source, merged)
            else:
                name, tmp = staged
                os.replace(tmp, self.segment_dir / name)  # FileNotFoundError: tmp removed
                _fsync(self.segment_dir / source)
            db.executemany("DELETE FROM segments WHERE file = ?", ((f,) for f in files))
            # Not deleted yet: a reader may hold a listing from before this commit.
            now = self._wall_clock()
            db.executemany(
                "INSERT OR REPLACE INTO superseded VALUES (?, ?)", ((f, now) for f in files)
            )
            db.execute(
                "INSERT INTO segments VALUES (?, ?, ?, ?, ?)",
                (
                    source,
                    name,
                    merged.num_rows,
                    pc.min(merged[SEQ]).as_py(),
                    pc.max(merged[SEQ]).as_py(),
                ),
            )

    def remove_superseded(self, connection: sqlite3.Connection | None = None) -> int:
        """Delete files compaction replaced more than the grace period ago; returns how many."""
        deadline = self._wall_clock() - self.compaction_grace_s
        with self._transaction(connection) as db:
            expired = [
                row[0]
                for row in db.execute(
                    "SELECT file FROM superseded WHERE superseded_at <= ?", (deadline,)
                )
            ]
            for file in expired:
                (self.segment_dir / file).unlink(missing_ok=True)
            db.executemany("DELETE FROM superseded WHERE file = ?", ((f,) for f in expired))
        return len(expired)

    def _remove_orphans(self) -> None:
        """Delete segment files a crash left behind before their commit.

        Segment files are only written under the write lock, so holding it here means
        any file not in the catalogue belongs to no live transaction. Files a compaction
        superseded are kept until their grace period is over.
        """
        self.remove_superseded()
        with self._transaction() as db:
            known = {row[0] for row in db.execute("SELECT file FROM segments")}
            known.update(row[0] for row in db.execute("SELECT file FROM superseded"))
            for path in self.segment_dir.glob("*/*"):
                if f"{path.parent.name}/{path.name}" not in known:
                    path.unlink(missing_ok=True)

    def wait_for_compaction(self) -> None:
        """Return once the compactions appends asked the thread for have run."""
        if self._compactor is not None:
            self._compactor.drain()

    def close(self) -> None:
        if self._compactor is not None:
            self._compactor.close()  # after the compaction it may be running
        self._db.close()


def _ascending(seqs: pa.ChunkedArray) -> bool:
    """Whether ``seqs`` strictly increase."""
    values = seqs.to_numpy()
    return bool(np.all(values[1:] > values[:-1]))


def _with_meta(events: pa.Table, last_seq: int, ingested_at: int) -> pa.Table:
    """``events`` with their ingestion time and seqs following ``last_seq``."""
    count = events.num_rows
    return events.append_column(
        INGESTED_AT, pa.array([ingested_at] * count, type=pa.int64())
    ).append_column(SEQ, pa.array(np.arange(last_seq + 1, last_seq + 1 + count, dtype=np.int64)))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
