"""The change feed of the SQLite online store (``OnlineStore.change_feed``)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from crmfs.errors import StorageError
from crmfs.storage.ports import ChangeListener

_log = logging.getLogger(__name__)


class SqliteChangeFeed:
    """Notices of commits to a SQLite online store: a thread reads ``PRAGMA data_version``
    on a connection of its own every ``poll_s`` and says ``None`` when it changed (any
    connection's commit, this process's too). If the file cannot be read, the feed is not
    ``connected`` until it can again (see ``ports.ChangeFeed``)."""

    def __init__(self, path: Path, poll_s: float = 0.025) -> None:
        self.path = path
        self.poll_s = poll_s
        self._db: sqlite3.Connection | None = None
        self._version: int | None = None
        self._listener: ChangeListener | None = None
        self._connected = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self, listener: ChangeListener) -> None:
        if self._listener is not None:
            raise StorageError("a change feed is started once; make another with change_feed()")
        self._listener = listener
        self._poll()
        self._thread = threading.Thread(target=self._run, name="crmfs-change-feed", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._connected = False
        if self._db is not None:
            self._db.close()
            self._db = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._poll()

    def _poll(self) -> None:
        try:
            if self._db is None:
                self._db = sqlite3.connect(
                    self.path, timeout=1.0, check_same_thread=False, isolation_level=None
                )
            version: int = self._db.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            if self._connected:
                _log.warning("change feed of %s: cannot read the file (%s)", self.path, exc)
                self._connected = False  # first: see ``ChangeFeed``
                self._tell()
            if self._db is not None:
                self._db.close()
                self._db = None
            return
        if not self._connected or version != self._version:
            self._version = version
            self._connected = True
            self._tell()

    def _tell(self) -> None:
        assert self._listener is not None
        try:
            self._listener(None)
        except Exception:  # a listener's bug must not end the notices of every other write
            _log.exception("change feed of %s: the listener failed", self.path)
