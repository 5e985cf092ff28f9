"""One ingestion pipeline for every entry point: validate → identity → log → online."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from crmfs.definitions import Catalog, EventSource
from crmfs.errors import IngestError
from crmfs.ingestion.identity import IdentityStep, KeysAsGiven
from crmfs.ingestion.readers import Records, to_table
from crmfs.ingestion.validation import validate
from crmfs.runtimes.streaming.processor import Prepared, StreamProcessor
from crmfs.storage.event_log import AppendResult, EventLog, Rejected


@dataclass
class IngestReport:
    """What an ingest call did. Every received record is accepted, a duplicate, or quarantined."""

    source: str
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    already_quarantined: int = 0  # of ``quarantined``: rejected before, not stored again
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, other: IngestReport) -> None:
        self.received += other.received
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.already_quarantined += other.already_quarantined
        for reason, count in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count


UNPARSABLE = "unparsable"
# Batches from this size are folded while they are appended (see ``_append_while_folding``).
OVERLAP_MIN_ROWS = 1_000


class IngestionPipeline:
    """Validates, resolves identity, appends to the log and updates the online store."""

    def __init__(
        self,
        catalog: Catalog,
        log: EventLog,
        processor: StreamProcessor,
        clock: Callable[[], int],
        identity: IdentityStep | None = None,
        after_apply: Callable[[str], object] | None = None,
    ) -> None:
        self.catalog = catalog
        self.log = log
        self.processor = processor
        self.clock = clock
        self.identity = identity or KeysAsGiven()
        # Run once a batch is applied online (the identity follower: merges and splits).
        self.after_apply = after_apply

    def source(self, name: str) -> EventSource:
        source = self.catalog.sources.get(name)
        if source is None:
            known = ", ".join(sorted(self.catalog.sources)) or "none defined"
            raise IngestError(f"unknown source {name!r}; sources: {known}")
        return source

    def ingest(
        self,
        source_name: str,
        records: Records,
        now: int | None = None,
        extra_rejected: list[Rejected] | None = None,
    ) -> IngestReport:
        """Ingest one batch; returns once it is durable in the log and applied online."""
        source = self.source(source_name)
        raw = to_table(records)
        at = self.clock() if now is None else now
        checked = validate(source, raw, at) if raw.num_rows else None
        rejected = list(extra_rejected or [])
        events = checked.events if checked else _empty(source)
        event_ids = checked.event_ids if checked else []
        if checked:
            rejected.extend(checked.rejected)
        resolved = self.identity.resolve(source, events, event_ids, at)
        events, event_ids = resolved.events, resolved.event_ids
        rejected.extend(resolved.rejected)
        if events.num_rows >= OVERLAP_MIN_ROWS:
            result, prepared = self._append_while_folding(
                source.name, events, event_ids, rejected, at
            )
        else:
            result, prepared = self.log.append(source.name, events, event_ids, rejected, at), None
        try:
            self.processor.apply_committed(source.name, result.accepted, self.log, prepared)
        finally:
            if prepared is not None:
                prepared.abort()  # if it was not committed (an error): the write is let go
        if self.after_apply is not None:
            self.after_apply(source.name)
        report = IngestReport(
            source=source.name,
            received=raw.num_rows + len(extra_rejected or []),
            accepted=result.accepted.num_rows,
            duplicates=result.duplicates,
            quarantined=result.quarantined,
            already_quarantined=result.already_quarantined,
        )
        for r in rejected:
            key = r.field or UNPARSABLE  # by field; records that could not be read at all apart
            report.reasons[key] = report.reasons.get(key, 0) + 1
        return report

    def _append_while_folding(
        self,
        source: str,
        events: pa.Table,
        event_ids: list[Any],
        rejected: list[Rejected],
        at: int,
    ) -> tuple[AppendResult, Prepared | None]:
        """Append the batch in a thread while folding it as the log will most likely accept
        it (``EventLog.predict``): the segment write, its fsyncs and compaction release the
        GIL. The fold is only used if the committed batch is the predicted one, and only
        written online after the append committed, as without the overlap."""
        predicted = self.log.predict(events, at)
        with ThreadPoolExecutor(1, thread_name_prefix="append") as pool:
            appended = pool.submit(self.log.append, source, events, event_ids, rejected, at)
            try:
                prepared = self.processor.prepare(source, predicted)
            except BaseException:
                wait([appended])  # the append's outcome stands; the fold is redone later
                raise
            try:
                return appended.result(), prepared
            except BaseException:
                if prepared is not None:
                    prepared.abort()  # nothing was appended: its states must not land
                raise


def _empty(source: EventSource) -> pa.Table:
    from crmfs.storage.arrow_schema import source_schema

    return source_schema(source).empty_table()
