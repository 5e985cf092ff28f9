"""One lock for every process that commits to a project's log and online store.

Stream workers validate their messages in parallel, but resolve identity, append to the
event log, write the online store and follow identity changes holding this lock: the log
gives seqs in the order batches are appended, the online store applies the log in that
order (its watermark), and the followers rewrite states that a fold must not have read
before. Holding one lock through all of it makes each worker's commit a step of its own,
as a single process's ingest is.

It is an exclusive ``flock`` on a file of the project's data folder, so the kernel lets go
of it when its holder dies, however it dies (SIGKILL included); workers of a project run
on the machine that holds its data folder (the embedded event log and identity graph).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

from crmfs.errors import ConfigError

LOCK_FILE = "commit.lock"


class CommitLock:
    """``with lock:`` holds the project's commit lock (not re-entrant). ``acquire`` and
    ``release`` may be called from different threads of the holder (an append thread lets
    go of it as soon as the log has committed)."""

    def __init__(self, path: Path) -> None:
        try:
            import fcntl
        except ImportError:  # Windows
            raise ConfigError("stream workers need POSIX file locks (Linux, macOS)") from None
        self._fcntl = fcntl
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._threads = threading.Lock()

    def acquire(self) -> None:
        self._threads.acquire()
        try:
            self._fcntl.flock(self._fd, self._fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def release(self) -> None:
        try:
            self._fcntl.flock(self._fd, self._fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def __enter__(self) -> CommitLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()

    def close(self) -> None:
        os.close(self._fd)
