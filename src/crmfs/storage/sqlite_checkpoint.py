"""Checkpoint a SQLite WAL from a background thread instead of the committing one.

SQLite's automatic checkpoint runs inside the ``COMMIT`` that crosses its threshold, so the
writer waits while pages are copied from the WAL into the database file and fsynced. A
``BackgroundCheckpointer`` does that copy on its own connection in a thread: the writer counts
the pages its commits may have dirtied (``written``) and goes on; the thread runs a passive
checkpoint once enough have piled up (SQLite's step releases the GIL, so the copy overlaps
with the writer's Python work). A passive checkpoint never blocks readers or writers, and
copies only committed frames: durability is what ``synchronous`` says, as before. SQLite's
own automatic checkpoint stays on with a higher threshold, a backstop should the thread lag.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

_log = logging.getLogger(__name__)


class BackgroundCheckpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on ``path`` once ``pages`` pages were written."""

    def __init__(self, path: Path, pages: int) -> None:
        self._path = path
        self._pages = pages
        self._pending = 0
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def written(self, pages: int) -> None:
        """A commit may have written ``pages`` pages to the WAL."""
        with self._wake:
            self._pending += pages
            if self._pending < self._pages or self._stopping:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"checkpoint {self._path.name}", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=60000")
            while True:
                with self._wake:
                    while self._pending < self._pages and not self._stopping:
                        self._wake.wait()
                    if self._stopping:
                        return
                    self._pending = 0
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # upkeep: the next commit's checkpoint retries
                    _log.warning("checkpoint of %s failed: %s", self._path, exc)
        finally:
            db.close()

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
