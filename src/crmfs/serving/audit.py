"""The access audit log: one JSON line per refused or masked request, append-only.

Every server worker appends to the same file; each record is written by one ``write`` on a
file opened with ``O_APPEND``, so lines from several processes never interleave. A reader
role on a service with a confidential feature is audited at every request, so the file is
rotated by size: past ``max_bytes`` it becomes ``access.jsonl.1`` (the older ones shift to
``.2`` ... ``.keep``, the oldest is deleted), under a file lock, and every process follows
the new file at its next record.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit/access.jsonl"
MAX_BYTES = 64 * 2**20
KEEP = 5
_CHECK_EVERY_BYTES = 64 * 1024  # how often a process looks at the file's size


class AuditLog:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd = self._open()
        self._since_check = 0

    def record(self, decision: str, **details: Any) -> None:
        """Append one decision (``unauthenticated``, ``forbidden``, ``masked`` ...)."""
        entry = {"at": datetime.now(UTC).isoformat(), "decision": decision, **details}
        line = (json.dumps(entry, default=str, separators=(",", ":")) + "\n").encode()
        with self._lock:
            self._follow_rotation()
            os.write(self._fd, line)
            self._since_check += len(line)
            if self._since_check >= min(_CHECK_EVERY_BYTES, self.max_bytes):
                self._since_check = 0
                self._rotate_if_full()

    def recent(self, limit: int = 100) -> list[Mapping[str, Any]]:
        """The last ``limit`` records of the current file, oldest first."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as lines:
            tail = deque(lines, maxlen=limit)
        return [json.loads(line) for line in tail if line.strip()]

    def files(self) -> list[Path]:
        """The current file and the rotated ones, newest first."""
        older = [self._rotated(n) for n in range(1, self.keep + 1)]
        return [p for p in [self.path, *older] if p.exists()]

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def _follow_rotation(self) -> None:
        """Another process rotated the file: write to the new one."""
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(self._fd).st_ino:
            os.close(self._fd)
            self._fd = self._open()

    def _rotate_if_full(self) -> None:
        if os.fstat(self._fd).st_size < self.max_bytes:
            return
        with (self.path.parent / ".access.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._follow_rotation()  # another process may have rotated meanwhile
            if os.fstat(self._fd).st_size < self.max_bytes:
                return
            for n in range(self.keep, 1, -1):
                if self._rotated(n - 1).exists():
                    os.replace(self._rotated(n - 1), self._rotated(n))
            os.replace(self.path, self._rotated(1))
            os.close(self._fd)
            self._fd = self._open()
