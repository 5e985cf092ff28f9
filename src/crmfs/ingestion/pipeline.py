"""One ingestion pipeline for every entry point: validate → identity → log → online."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from crmfs.storage.event_log import SEQ, AppendResult, EventLog, Rejected


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


@dataclass(frozen=True)
class Checked:
    """A batch validated and not yet stored: its valid events (with ``_event_time_us``),
    their ids, the records rejected so far and how many records were received."""

    source: EventSource
    events: pa.Table
    event_ids: list[Any]
    rejected: list[Rejected]
    received: int


@dataclass(frozen=True)
class Stored:
    """Checked batches of one source in the log: the new events (in log order, with their
    seqs and ingestion time), each append's result and every record rejected."""

    source: EventSource
    received: int
    accepted: pa.Table
    results: list[AppendResult]
    rejected: list[Rejected]

    def report(self) -> IngestReport:
        report = IngestReport(source=self.source.name, received=self.received)
        for result in self.results:
            report.accepted += result.accepted.num_rows
            report.duplicates += result.duplicates
            report.quarantined += result.quarantined
            report.already_quarantined += result.already_quarantined
        for r in self.rejected:
            key = r.field or UNPARSABLE  # by field; records that could not be read at all apart
            report.reasons[key] = report.reasons.get(key, 0) + 1
        return report


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
        at = self.clock() if now is None else now
        checked = self.check(source_name, to_table(records), at, extra_rejected)
        return self.commit([checked], at)

    def check(
        self,
        source_name: str,
        raw: pa.Table,
        at: int,
        extra_rejected: list[Rejected] | None = None,
    ) -> Checked:
        """Validate a batch of ``source_name`` received at ``at``; nothing is stored yet."""
        source = self.source(source_name)
        checked = validate(source, raw, at) if raw.num_rows else None
        rejected = list(extra_rejected or [])
        received = raw.num_rows + len(rejected)
        if checked is None:
            return Checked(source, _empty(source), [], rejected, received)
        rejected.extend(checked.rejected)
        return Checked(source, checked.events, checked.event_ids, rejected, received)

    def commit(self, parts: Sequence[Checked], at: int, follow: bool = True) -> IngestReport:
        """Store checked batches of one source (in order, see ``store``) and apply them
        online. ``follow``: run ``after_apply`` (the identity and relation followers)."""
        source = parts[0].source
        if source.identifiers and len(parts) > 1:
            stored = self.store(parts, at)
            if _consecutive(stored.accepted):
                self.processor.apply_committed(source.name, stored.accepted, self.log)
            else:  # another process appended in between: apply the log in its order
                self.processor.catch_up(self.log)
        else:
            result, prepared, rejected = self._store(parts, at, overlap=True)
            try:
                self.processor.apply_committed(source.name, result.accepted, self.log, prepared)
            finally:
                if prepared is not None:
                    prepared.abort()  # if it was not committed (an error): the write is let go
            stored = Stored(source, _received(parts), result.accepted, [result], rejected)
        if follow and self.after_apply is not None:
            self.after_apply(source.name)
        return stored.report()

    def store(self, parts: Sequence[Checked], at: int) -> Stored:
        """Resolve identity and append checked batches of one source (in order) to the log;
        nothing is applied online. One append for all of them, or, for a source resolved by
        the identity graph, one per part right after its identity step: so a crash between
        the graph's commit and the log's leaves one part's records in the graph only, and
        that part's redelivery gets the golden ids it would have had."""
        source = parts[0].source
        groups = [[part] for part in parts] if source.identifiers else [list(parts)]
        appended = [self._store(group, at, overlap=False) for group in groups]
        results = [result for result, _, _ in appended]
        accepted = (
            results[0].accepted
            if len(results) == 1
            else pa.concat_tables([r.accepted for r in results])
        )
        rejected = [r for _, _, group_rejected in appended for r in group_rejected]
        return Stored(source, _received(parts), accepted, results, rejected)

    def _store(
        self, parts: Sequence[Checked], at: int, overlap: bool
    ) -> tuple[AppendResult, Prepared | None, list[Rejected]]:
        """Resolve identity and append ``parts`` as one batch (the result, the fold and
        every record rejected); with ``overlap``, a large batch is folded while it is
        appended (the fold is to be committed or aborted)."""
        source = parts[0].source
        events, event_ids, rejected = [], [], []
        for part in parts:
            resolved = self.identity.resolve(source, part.events, part.event_ids, at)
            events.append(resolved.events)
            event_ids.extend(resolved.event_ids)
            rejected.extend(part.rejected)
            rejected.extend(resolved.rejected)
        batch = events[0] if len(events) == 1 else pa.concat_tables(events)
        if overlap and batch.num_rows >= OVERLAP_MIN_ROWS:
            result, prepared = self._append_while_folding(
                source.name, batch, event_ids, rejected, at
            )
            return result, prepared, rejected
        return self.log.append(source.name, batch, event_ids, rejected, at), None, rejected

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


def _received(parts: Sequence[Checked]) -> int:
    return sum(part.received for part in parts)


def _consecutive(batch: pa.Table) -> bool:
    """Whether the seqs of ``batch`` follow one another (no other append in between)."""
    if batch.num_rows == 0:
        return True
    first: int = batch[SEQ][0].as_py()
    last: int = batch[SEQ][-1].as_py()
    return bool(last - first + 1 == batch.num_rows)


def _empty(source: EventSource) -> pa.Table:
    from crmfs.storage.arrow_schema import source_schema

    return source_schema(source).empty_table()
