"""The access audit log: one JSON line per refused or masked request, append-only.

Every server worker appends to the same file; each record is written by one ``write`` on a
file opened with ``O_APPEND``, so lines from several processes never interleave.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit/access.jsonl"


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()

    def record(self, decision: str, **details: Any) -> None:
        """Append one decision (``refused``, ``masked``, ``unauthenticated`` ...)."""
        entry = {"at": datetime.now(UTC).isoformat(), "decision": decision, **details}
        line = (json.dumps(entry, default=str, separators=(",", ":")) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)

    def recent(self, limit: int = 100) -> list[Mapping[str, Any]]:
        """The last ``limit`` records, oldest first."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as lines:
            tail = deque(lines, maxlen=limit)
        return [json.loads(line) for line in tail if line.strip()]

    def close(self) -> None:
        os.close(self._fd)
