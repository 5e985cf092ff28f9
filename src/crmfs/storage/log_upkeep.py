"""Compact the event log in a thread, so an ingest does not wait for it.

Merging a tier of 48 batch segments reads and writes a few hundred thousand rows (about a
second); done inside the append that made it due, it stalled that ingest. A
``BackgroundCompactor`` runs it in one thread on its own SQLite connection instead: the
merged file is written under a temporary name without the write lock, then renamed into
place and swapped into the catalogue in one short transaction under the lock (orphan removal
in another process, which takes the same lock, never sees it half done; a crash leaves a
temporary or unlisted file that the next open removes). Files it replaces stay for the grace
period, as with a compaction in the append. One compaction runs at a time; a request that
comes while one runs is kept and served after it. A compaction that fails is logged and
tried again on a later append; closing waits for the compactions already requested.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

_log = logging.getLogger(__name__)

Compact = Callable[[str, sqlite3.Connection], None]


class BackgroundCompactor:
    """Runs ``compact(source, db)`` in a thread for the sources ``request``ed."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], compact: Compact) -> None:
        self._connect = connect
        self._compact = compact
        self._pending: list[str] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._busy = False
        self._thread: threading.Thread | None = None

    def request(self, source: str) -> None:
        """Compact ``source`` if a tier of it is due (checked in the thread)."""
        with self._wake:
            if self._stopping:
                return
            if source not in self._pending:
                self._pending.append(source)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="event log compaction", daemon=True
                )
                self._thread.start()
            self._wake.notify_all()

    def _run(self) -> None:
        try:
            db = self._connect()
        except Exception as exc:  # upkeep: the appends are committed
            _log.warning("event log compaction cannot start: %s", exc)
            self._exit()
            return
        try:
            while True:
                with self._wake:
                    while not self._pending and not self._stopping:
                        self._wake.wait()
                    if not self._pending:
                        return  # stopping, with nothing left to do
                    source = self._pending.pop(0)
                    self._busy = True
                try:
                    self._compact(source, db)
                except Exception as exc:  # upkeep: tried again on a later append
                    _log.warning("event log compaction of %r failed: %s", source, exc)
                finally:
                    with self._wake:
                        self._busy = False
                        self._wake.notify_all()
        finally:
            db.close()
            self._exit()

    def _exit(self) -> None:
        """The thread is gone: the next request starts another; waiters stop waiting."""
        with self._wake:
            self._thread = None
            self._pending.clear()
            self._wake.notify_all()

    def drain(self) -> None:
        """Wait until every requested compaction has run."""
        with self._wake:
            while (self._pending or self._busy) and self._thread is not None:
                self._wake.wait()

    def close(self) -> None:
        """Stop the thread once the compactions requested so far have run (a process that
        ingests once and exits still keeps its log's segments few)."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
