"""An in-process cache of state blobs in front of an online store, kept right by its writes.

A server process reads the same hot entities again and again. ``CachedReads`` keeps the
blobs it read, absent keys too (a recommender often asks for candidates nothing is known
about), and the watermark, and drops them when the store's change feed (``ports.ChangeFeed``)
tells of a write by any process: a key's notice drops its entry, a notice of the marks the
watermark, ``None`` everything. So a value served is as recent as a direct read made a
notice's delay earlier (Redis: about a millisecond). And:

- Nothing is served from the cache while the feed is not ``connected`` (before it connects,
  after it lost its source): reads go straight to the store, and nothing is cached.
- No entry is served longer than ``ttl_s`` after the read that filled it began, whatever the
  feed says: a bound even if a notice were lost.
- A notice may arrive after a read fetched a blob but before the blob is cached. So a read
  notes how many notices the cache had taken when it looked its keys up, and caches only
  the blobs of keys no notice named since (the last notices are kept for this; if one of
  them was ``None``, or they are no longer all kept, it caches none). The watermark read is
  cached only if its slot still holds what the read found there (or the read's own
  placeholder): a notice of the marks replaces it.
- When all keys hit and the watermark is cached, a read makes no round trip; when only the
  watermark is missing, it reads only the watermark; otherwise it reads the keys it missed,
  and the watermark with them, in one ``read_views`` call.
- Over ``max_entries``, the entries filled longest ago go first: each expires ``ttl_s``
  after its fill, so they have the least time left; and a hit costs no reordering.

A store without a change feed (no ``HasChangeFeed``) is read straight through, uncached
(``enabled`` is False). Over SQLite the cache gains nothing: that store's own blob cache is
checked against every commit at each read, where the feed polls (``SqliteOnlineStore``).

Example::

    reads = CachedReads(store.online)             # starts the store's change feed
    watermark, blobs = reads.read_views([("orders_v1", [17, 42])])
    reads.hits, reads.misses                      # cumulative, for metrics
    reads.close()
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice

from crmfs.errors import ConfigError
from crmfs.storage.ports import (
    ChangeFeed,
    ChangeNotice,
    EntityKey,
    HasChangeFeed,
    OnlineStore,
    Watermark,
)

_NEVER = float("-inf")  # the read time of the watermark's placeholder: never served
_CachedMark = tuple[float, Watermark | None]  # (when the read began, the watermark)
_NO_WATERMARK: _CachedMark = (_NEVER, None)
_EVICTED_SLICE = 16  # an eviction makes room for max_entries / 16 more fills at once
# Notices kept for reads in flight. The Redis feed passes on the messages waiting together
# as one notice, so a read of a millisecond sees a few; a read that saw more fills nothing.
_NOTICES_KEPT = 256
Reads = Sequence[tuple[str, Sequence[EntityKey]]]
Name = tuple[str, EntityKey]


class CachedReads:
    """``read_views`` of an online store through an in-process cache of state blobs.

    Thread-safe. ``hits`` and ``misses`` count entity blobs served from the cache and read
    from the store (reads passed straight through count as misses).
    """

    def __init__(
        self,
        online: OnlineStore,
        *,
        max_entries: int = 100_000,
        ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ConfigError(f"cache max_entries must be at least 1, not {max_entries}")
        if not ttl_s > 0:
            raise ConfigError(f"cache ttl_s must be a positive number of seconds, not {ttl_s}")
        self._online = online
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        # (when the read began, the blob), in the order filled: a dict keeps it.
        self._entries: dict[Name, tuple[float, bytes | None]] = {}
        self._watermark = _NO_WATERMARK
        self._taken = 0  # notices taken so far
        self._notices: deque[tuple[int, ChangeNotice | None]] = deque(maxlen=_NOTICES_KEPT)
        self.hits = 0
        self.misses = 0
        self._feed: ChangeFeed | None = (
            online.change_feed() if isinstance(online, HasChangeFeed) else None
        )
        if self._feed is not None:
            self._feed.start(self.invalidate)

    @property
    def enabled(self) -> bool:
        """Whether the store has a change feed, without which nothing is cached."""
        return self._feed is not None

    @property
    def connected(self) -> bool:
        """Whether the cache is in use now (its feed connected)."""
        return self._feed is not None and self._feed.connected

    @property
    def entries(self) -> int:
        """Keys cached now."""
        return len(self._entries)

    def read_views(self, reads: Reads) -> tuple[Watermark, list[list[bytes | None]]]:
        """What ``OnlineStore.read_views`` returns, hot entries from this process."""
        feed = self._feed
        if feed is None or not feed.connected:
            return self._read_through(reads)
        started = self._clock()
        oldest = started - self._ttl_s
        with self._lock:
            if not feed.connected:  # lost meanwhile: its ``None`` may not have come yet
                self.misses += sum(len(keys) for _, keys in reads)
                through = True
            else:
                through = False
                found, missed = self._look_up(reads, oldest)
                mark = self._watermark
                if not (mark[1] is not None and mark[0] > oldest):
                    mark = (_NEVER, None)  # this read's placeholder: a new tuple
                    self._watermark = mark
                taken = self._taken
        if through:
            return self._online.read_views(reads)
        if not missed:
            if mark[1] is not None:
                return mark[1], found
            watermark = self._online.watermark()
            with self._lock:
                if self._watermark is mark:  # else a notice of the marks came meanwhile
                    self._watermark = (started, watermark)
            return watermark, found
        watermark, read = self._online.read_views(
            [(missing.table, missing.keys) for missing in missed]
        )
        for missing, fetched in zip(missed, read, strict=True):
            blobs = missing.blobs
            for index, blob in zip(missing.at, fetched, strict=True):
                blobs[index] = blob
        with self._lock:
            if self._watermark is mark:
                self._watermark = (started, watermark)
            self._fill(missed, read, started, taken)
        return watermark, found

    def _look_up(
        self, reads: Reads, oldest: float
    ) -> tuple[list[list[bytes | None]], list[_Missed]]:
        """The blobs cached since after ``oldest`` (None where missed), and what was missed.
        Under the lock."""
        found: list[list[bytes | None]] = []
        missed: list[_Missed] = []
        entries = self._entries
        get = entries.get
        for table, keys in reads:
            blobs: list[bytes | None] = []
            missing = None
            for key in keys:
                name = (table, key)
                entry = get(name)
                if entry is not None:
                    if entry[0] > oldest:
                        blobs.append(entry[1])
                        continue
                    del entries[name]  # expired: filled again, at the end
                if missing is None:
                    missing = _Missed(table, blobs)
                    missed.append(missing)
                missing.at.append(len(blobs))
                missing.keys.append(key)
                blobs.append(None)
            found.append(blobs)
        misses = sum(len(missing.keys) for missing in missed)
        self.misses += misses
        self.hits += sum(map(len, found)) - misses
        return found, missed

    def _fill(
        self,
        missed: list[_Missed],
        read: list[list[bytes | None]],
        started: float,
        taken: int,
    ) -> None:
        """Cache the blobs read, but those of keys named by the notices taken since the
        read looked its keys up (``taken``). Under the lock."""
        dropped = self._named_since(taken)
        if dropped is None:
            return
        entries = self._entries
        for missing, fetched in zip(missed, read, strict=True):
            table = missing.table
            names = [(table, key) for key in missing.keys]
            filled = [(started, blob) for blob in fetched]
            if dropped:
                entries.update(
                    (name, entry)
                    for name, entry in zip(names, filled, strict=True)
                    if name not in dropped
                )
            else:
                entries.update(zip(names, filled, strict=True))
        if len(entries) > self._max_entries:
            count = len(entries) - self._max_entries + self._max_entries // _EVICTED_SLICE
            for name in list(islice(entries, count)):  # the first filled
                del entries[name]

    def _named_since(self, taken: int) -> set[Name] | None:
        """The keys the notices after the first ``taken`` named; None if one of them was
        ``None`` or they are not all kept."""
        if self._taken == taken:
            return set()
        notices = self._notices
        if notices[0][0] > taken + 1:
            return None
        named: set[Name] = set()
        for number, notice in reversed(notices):
            if number <= taken:
                break
            if notice is None:
                return None
            named.update(notice.states)
        return named

    def invalidate(self, notice: ChangeNotice | None = None) -> None:
        """Drop the entries of a notice's keys, the watermark if it names the marks, or
        (``None``) everything. The change feed calls it; writes in this process may too."""
        with self._lock:
            self._taken += 1
            self._notices.append((self._taken, notice))
            if notice is None:
                self._entries.clear()
                self._watermark = _NO_WATERMARK
                return
            pop = self._entries.pop
            for name in notice.states:
                pop(name, None)
            if notice.marks:
                self._watermark = _NO_WATERMARK

    def close(self) -> None:
        """Stop the change feed and empty the cache (the online store stays open)."""
        if self._feed is not None:
            self._feed.close()
        self.invalidate(None)

    def _read_through(self, reads: Reads) -> tuple[Watermark, list[list[bytes | None]]]:
        with self._lock:
            self.misses += sum(len(keys) for _, keys in reads)
        return self._online.read_views(reads)


class _Missed:
    """The keys a read missed in one table, and where their blobs go."""

    __slots__ = ("at", "blobs", "keys", "table")

    def __init__(self, table: str, blobs: list[bytes | None]) -> None:
        self.table = table
        self.blobs = blobs  # what the read returns for the table
        self.keys: list[EntityKey] = []
        self.at: list[int] = []  # the keys' positions in ``blobs``
