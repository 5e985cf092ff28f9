"""Storage ports: the small protocols runtimes and use cases depend on."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from crmfs.errors import StorageError

EntityKey = str | int


@dataclass(frozen=True)
class Watermark:
    """How far the online store has applied the event log."""

    seq: int = 0
    ingested_at: int = 0


class WatermarkMoved(StorageError):
    """The online store moved on while a backfill was computed; retry it."""

    def __init__(self, expected: Watermark, current: Watermark) -> None:
        self.expected = expected
        self.current = current
        super().__init__(f"online store advanced from seq {expected.seq} to {current.seq}; retry")


class StagedWrite(Protocol):
    """An open write of an online store: blobs go in as they are ready, and all of them
    become visible at once, with the watermark, on ``commit``; ``abort`` drops them."""

    def add(self, updates: Mapping[str, Mapping[EntityKey, bytes]]) -> None: ...

    def commit(self, watermark: Watermark | None = None) -> None: ...

    def abort(self) -> None:
        """Drop what was added (nothing if already committed or aborted)."""
        ...


class OnlineStore(Protocol):
    """Per-entity state blobs by table, written atomically with the stream watermark."""

    def read(self, table: str, keys: Sequence[EntityKey]) -> list[bytes | None]:
        """The blobs of ``keys`` in order; None where a key has no state."""
        ...

    def read_views(
        self, reads: Sequence[tuple[str, Sequence[EntityKey]]]
    ) -> tuple[Watermark, list[list[bytes | None]]]:
        """``read`` of each ``(table, keys)``, and the watermark: what a serving call needs,
        in one round trip where the store is remote."""
        ...

    def write(
        self,
        updates: Mapping[str, Mapping[EntityKey, bytes]],
        watermark: Watermark | None = None,
        expected: Watermark | None = None,
    ) -> None:
        """Store all blobs of all tables and the watermark in one atomic step.

        With ``expected``, raise ``WatermarkMoved`` (and write nothing) unless the stored
        watermark still equals it: the blobs were read under that watermark.
        """
        ...

    def begin_write(self, expected: Watermark | None = None) -> StagedWrite:
        """``write`` in steps, so that blobs are stored while others are still computed.

        Raises ``WatermarkMoved`` if ``expected`` is given and the stored watermark is
        another. Until ``commit`` or ``abort``, the calling thread's own reads see the blobs
        added so far, and other writers wait.
        """
        ...

    def watermark(self) -> Watermark: ...

    def identity_mark(self) -> int:
        """The last identity change (``IdentityGraph`` change seq) applied to the states."""
        ...

    def apply_identity(
        self, updates: Mapping[str, Mapping[EntityKey, bytes | None]], identity_seq: int
    ) -> None:
        """Store blobs (None: delete the key's state) and the identity mark in one step."""
        ...

    def replace_table(
        self, table: str, rows: Mapping[EntityKey, bytes], expected: Watermark
    ) -> None:
        """Swap a table's whole content (a backfill) atomically.

        Raises ``WatermarkMoved`` if events were applied since ``expected``: the rows were
        computed from an older log and the caller must recompute.
        """
        ...

    def drop_table(self, table: str) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ChangeNotice:
    """Writes a ``ChangeFeed`` saw: entity states by ``(table, key)``, and whether the
    store's marks (the watermark, the identity mark) were written."""

    states: tuple[tuple[str, EntityKey], ...] = ()
    marks: bool = False


# Called by a change feed, from a thread of its own. ``None``: anything may have changed (a
# table was replaced or dropped, the store was flushed, or notices may have been lost while
# the feed was not connected): drop everything.
ChangeListener = Callable[[ChangeNotice | None], None]


class ChangeFeed(Protocol):
    """Push notice of writes to an online store, by any process, for caches in front of it.

    ``start`` calls ``listener`` for each write noticed (a write's keys together), from a
    thread of the feed's own, until ``close``. While ``connected``, every write committed
    since the feed (re)connected is noticed, after a short delay. When the feed loses its
    source it sets ``connected`` to False *before* calling ``listener(None)``; once it
    has its source back it sets it to True, then calls ``listener(None)`` again. So a cache
    that fills only while ``connected`` and drops everything on ``None`` never keeps a
    value a lost notice should have dropped.

    Example::

        feed = store.change_feed()
        feed.start(lambda notice: print(notice))   # None, then ChangeNotice(...) per write
        ...
        feed.close()
    """

    @property
    def connected(self) -> bool:
        """Whether writes are being noticed now."""
        ...

    def start(self, listener: ChangeListener) -> None:
        """Connect (trying again in the background if that fails) and begin calling
        ``listener``; call once."""
        ...

    def close(self) -> None:
        """Stop calling the listener and let go of connections and threads. Idempotent."""
        ...


@runtime_checkable
class HasChangeFeed(Protocol):
    """An online store that can tell of writes: an optional ability, checked with
    ``isinstance(store, HasChangeFeed)``."""

    def change_feed(self) -> ChangeFeed:
        """A new feed of this store's writes (not started; the caller closes it)."""
        ...
