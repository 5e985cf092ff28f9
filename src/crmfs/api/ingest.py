"""Parsing the body of an ingestion request: a JSON array of objects, or NDJSON."""

from __future__ import annotations

from typing import Any

import orjson

from crmfs.errors import IngestError
from crmfs.storage.event_log import Rejected

NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")


def parse_events(
    body: bytes, content_type: str | None
) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """Records to ingest, and what could not be parsed (quarantined with the reason).

    A JSON array must parse as a whole (else the request is refused and nothing is kept);
    NDJSON is read line by line, and a bad line is quarantined while the others go in.
    """
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    if kind in NDJSON_TYPES:
        return _lines(body)
    if kind != "application/json":
        raise IngestError(
            f"content-type {kind!r}: send application/json (an array) or application/x-ndjson"
        )
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(f"body: not valid JSON ({exc})") from None
    if not isinstance(items, list):
        raise IngestError("body: expected a JSON array of event objects")
    records, rejected = [], []
    for n, item in enumerate(items):
        if isinstance(item, dict):
            records.append(item)
        else:
            reason = f"item {n}: expected an object, got {type(item).__name__}"
            rejected.append(Rejected(None, reason, {"item": orjson.dumps(item).decode()}))
    return records, rejected


def _lines(body: bytes) -> tuple[list[dict[str, Any]], list[Rejected]]:
    records, rejected = [], []
    for n, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            text = line.decode("utf-8", errors="replace")
            rejected.append(Rejected(None, f"line {n}: not valid JSON ({exc})", {"line": text}))
            continue
        if isinstance(item, dict):
            records.append(item)
        else:
            reason = f"line {n}: expected an object, got {type(item).__name__}"
            rejected.append(Rejected(None, reason, {"line": line.decode("utf-8", "replace")}))
    return records, rejected
