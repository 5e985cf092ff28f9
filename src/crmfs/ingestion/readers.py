"""Turn what users hand to ``ingest`` into Arrow tables: Python records, pandas, Arrow, files."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from crmfs.definitions import EventSource
from crmfs.errors import IngestError

Records = Any  # a list of dicts, a pandas DataFrame, an Arrow table or record batch


def to_table(records: Records) -> pa.Table:
    """An Arrow table of the records, whatever their form."""
    if isinstance(records, pa.Table):
        return records
    if isinstance(records, pa.RecordBatch):
        return pa.Table.from_batches([records])
    if type(records).__module__.startswith("pandas"):
        table = pa.Table.from_pandas(records, preserve_index=False)
        return _separate_naive_and_aware(table, lambda name: records[name].tolist())
    if isinstance(records, Mapping | str | bytes):
        raise IngestError("records must be a list of dicts, a pandas DataFrame or an Arrow table")
    rows = list(records)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise IngestError(f"record {i} is a {type(row).__name__}, not a dict")
    try:
        table = pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        table = _mixed_types_table(rows)
    return _separate_naive_and_aware(table, lambda name: [row.get(name) for row in rows])


def _separate_naive_and_aware(table: pa.Table, values_of: Callable[[str], list[Any]]) -> pa.Table:
    """Timestamp columns mixing naive and aware datetimes become ISO text.

    Arrow gives a whole column the timezone (or none) of its first value: naive values after
    an aware one would be read as in that zone, aware ones after a naive one would lose their
    offset. As text, validation decides value by value: naive values take the source's
    timezone (or are rejected), aware ones are converted to UTC.
    """
    for index, name in enumerate(table.column_names):
        if not pa.types.is_timestamp(table.schema.field(index).type):
            continue
        values = values_of(name)
        if not _mixes_naive_and_aware(values):
            continue
        text = [v.isoformat() if isinstance(v, datetime) and v == v else None for v in values]
        table = table.set_column(index, name, pa.array(text, pa.string()))
    return table


def _mixes_naive_and_aware(values: list[Any]) -> bool:
    naive = aware = False
    for value in values:
        if isinstance(value, datetime) and value == value:  # pandas' NaT is a datetime
            if value.utcoffset() is None:
                naive = True
            else:
                aware = True
            if naive and aware:
                return True
    return False


def _mixed_types_table(rows: list[Mapping[str, Any]]) -> pa.Table:
    """Columns whose values have mixed types become text; validation then says which fail."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            columns[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(columns)


@dataclass(frozen=True)
class Chunk:
    """A piece of a file and how far into the file it reaches (``unit``: bytes or rows)."""

    table: pa.Table
    position: int
    total: int
    unit: str
    bad_lines: list[tuple[int, str, str]]  # (line number, text, problem): unparsable input


def read_file(path: Path, source: EventSource, chunk_rows: int = 50_000) -> Iterator[Chunk]:
    """Chunks of a CSV, JSON-lines or Parquet file, in order, of at most ``chunk_rows`` rows."""
    if not path.exists():
        raise IngestError(f"file not found: {path}")
    if not path.is_file():
        raise IngestError(f"cannot ingest {path}: not a regular file")
    if chunk_rows < 1:
        raise IngestError(f"chunk_rows must be at least 1, got {chunk_rows}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _parquet(path, chunk_rows)
    if suffix == ".csv":
        return _csv(path, chunk_rows)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _jsonl(path, chunk_rows)
    raise IngestError(
        f"cannot ingest {path.name}: unknown file type {suffix or '(none)'!r};"
        " use .csv, .jsonl/.ndjson/.json (JSON lines) or .parquet"
    )


def _parquet(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IngestError(f"{path.name} is not a readable Parquet file: {exc}") from exc
    total = file.metadata.num_rows
    done = 0
    for batch in file.iter_batches(batch_size=chunk_rows):
        done += batch.num_rows
        yield Chunk(pa.Table.from_batches([batch]), done, total, "rows", [])


def _csv(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    total = path.stat().st_size
    bad: list[tuple[int, str, str]] = []

    def invalid_row(row: Any) -> str:
        # A row with too few or too many cells goes to the quarantine; the file goes on.
        problem = f"expected {row.expected_columns} columns, got {row.actual_columns}"
        bad.append((row.number or 0, row.text, problem))
        return "skip"

    try:
        with path.open("rb") as handle:
            # Every column is read as text so that type inference cannot differ between
            # blocks; validation converts text to the declared types and explains failures.
            convert = pacsv.ConvertOptions(
                column_types=dict.fromkeys(_csv_header(path, handle), pa.string()),
                strings_can_be_null=True,
            )
            reader = pacsv.open_csv(
                handle,
                # One thread: bad rows then carry their line number, and the handle's
                # position is what the reader has parsed (no readahead).
                read_options=pacsv.ReadOptions(block_size=8 << 20, use_threads=False),
                parse_options=pacsv.ParseOptions(invalid_row_handler=invalid_row),
                convert_options=convert,
            )
            done = 0
            for batch in reader:
                # Bytes the reader has consumed: exact at block ends, which is what a bar needs.
                reached = min(total, handle.tell())
                rows = batch.num_rows
                for start in range(0, rows, chunk_rows):
                    end = min(rows, start + chunk_rows)
                    position = done + (reached - done) * end // rows
                    lines, bad = bad, []
                    yield Chunk(
                        pa.Table.from_batches([batch.slice(start, end - start)]),
                        position,
                        total,
                        "bytes",
                        lines,
                    )
                done = reached
    except pa.ArrowInvalid as exc:
        raise IngestError(f"{path.name}: malformed CSV: {exc}") from exc
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc}") from exc
    yield Chunk(pa.table({}), total, total, "bytes", bad)


def _csv_header(path: Path, handle: BinaryIO) -> list[str]:
    first = handle.readline()
    handle.seek(0)
    try:
        header = next(csv.reader([first.decode("utf-8-sig")]), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise IngestError(f"{path.name}: unreadable CSV header: {exc}") from exc
    if not any(name.strip() for name in header):
        raise IngestError(f"{path.name}: empty CSV, expected a header line with the field names")
    return header


def _jsonl(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    total = path.stat().st_size
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str, str]] = []
    done = 0
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc}") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            done += len(line)
            text = line.strip()
            if not text:
                continue
            if text.startswith(b"[") and not rows and not bad:
                raise IngestError(
                    f"{path.name} holds a JSON array; crmfs reads JSON lines (one object per line)"
                )
            try:
                value = json.loads(text)
            except ValueError as exc:
                bad.append((number, text.decode(errors="replace"), f"invalid JSON: {exc}"))
                continue
            if not isinstance(value, dict):
                bad.append(
                    (number, text.decode(errors="replace"), "a line must hold a JSON object")
                )
                continue
            rows.append(value)
            if len(rows) >= chunk_rows:
                yield Chunk(to_table(rows), done, total, "bytes", bad)
                rows, bad = [], []
    yield Chunk(to_table(rows) if rows else pa.table({}), total, total, "bytes", bad)
