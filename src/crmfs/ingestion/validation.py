"""Schema validation of incoming records, column by column, with per-record reasons.

Each column is converted to its declared type in one vectorized step; only when that
fails is the column converted value by value to find which records are bad and why.
A rejected record goes to the quarantine with the field and the problem; the others go on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from crmfs.definitions import EventSource, FieldType
from crmfs.storage.arrow_schema import ARROW_TYPES
from crmfs.storage.event_log import EVENT_TIME, Rejected
from crmfs.timestamps import to_micros, zone


@dataclass(frozen=True)
class Validated:
    """Valid events as a typed table (plus ``_event_time_us``) and the rejected records."""

    events: pa.Table
    event_ids: list[Any]
    rejected: list[Rejected]


def validate(source: EventSource, raw: pa.Table, now: int) -> Validated:
    """Check ``raw`` against the source schema; ``now`` bounds event times (no future events)."""
    errors: dict[int, tuple[str, str]] = {}
    columns: dict[str, pa.Array] = {}
    for name, dtype in source.fields.items():
        column = raw.column(name).combine_chunks() if name in raw.column_names else None
        if column is None:
            column = pa.nulls(raw.num_rows, ARROW_TYPES[dtype])
        columns[name] = _convert(source, name, dtype, column, errors)
    for name in (source.event_id, source.event_time, *source.required):
        for i in _null_positions(columns[name]):
            errors.setdefault(i, (name, "is required but missing"))
    event_micros = pc.cast(columns[source.event_time], pa.int64())
    future = pc.fill_null(pc.greater(event_micros, now), False)
    for i in _true_positions(future):
        errors.setdefault(i, (source.event_time, "is in the future (after the ingestion time)"))
    columns[EVENT_TIME] = event_micros
    table = pa.table(columns)
    rejected = []
    if errors:
        originals = raw.take(pa.array(sorted(errors), type=pa.int64())).to_pylist()
        for i, original in zip(sorted(errors), originals, strict=True):
            field, problem = errors[i]
            event_id = original.get(source.event_id)
            rejected.append(Rejected(field, f"{field}: {problem}", original, event_id))
        keep = [i for i in range(raw.num_rows) if i not in errors]
        table = table.take(pa.array(keep, type=pa.int64()))
    return Validated(table, table.column(source.event_id).to_pylist(), rejected)


def _null_positions(column: pa.Array) -> list[int]:
    return _true_positions(pc.is_null(column))


def _true_positions(mask: pa.Array) -> list[int]:
    if not pc.any(mask).as_py():
        return []
    return pc.indices_nonzero(mask).to_pylist()  # type: ignore[no-any-return]


def _convert(
    source: EventSource,
    name: str,
    dtype: FieldType,
    column: pa.Array,
    errors: dict[int, tuple[str, str]],
) -> pa.Array:
    target = ARROW_TYPES[dtype]
    try:
        converted = _vectorized(source, dtype, column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        converted = None
    if converted is not None:
        if dtype is FieldType.FLOAT:
            for i in _true_positions(pc.fill_null(pc.invert(pc.is_finite(converted)), False)):
                errors.setdefault(i, (name, "must be a finite number"))
        return converted
    convert_one = _SCALAR[dtype]
    values: list[Any] = []
    for i, value in enumerate(column.to_pylist()):
        if value is None:
            values.append(None)
            continue
        try:
            values.append(convert_one(value, source.timezone))
        except (ValueError, TypeError, OverflowError) as exc:
            errors.setdefault(i, (name, f"{value!r} is not a valid {dtype.value}: {exc}"))
            values.append(None)
    return pa.array(values, type=target)


def _vectorized(
    source: EventSource, dtype: FieldType, column: pa.Array, target: pa.DataType
) -> pa.Array | None:
    kind = column.type
    if dtype is FieldType.TIMESTAMP:
        if pa.types.is_timestamp(kind):
            if kind.tz is None:
                if source.timezone is None:
                    return None  # naive: the per-value path rejects it with the reason
                column = pc.assume_timezone(column, timezone=source.timezone)
            return pc.cast(column, target)
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return pc.cast(column, target)
        if pa.types.is_null(kind):
            return pa.nulls(len(column), target)
        return None
    if dtype is FieldType.INT and pa.types.is_floating(kind):
        return None  # 1.5 is not an int: per value, so integral floats pass and others say why
    if dtype is FieldType.BOOL and not (
        pa.types.is_boolean(kind) or pa.types.is_null(kind) or pa.types.is_string(kind)
    ):
        return None
    if dtype is FieldType.STRING and not (
        pa.types.is_string(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)
    ):
        return None
    return pc.cast(column, target)


def _to_string(value: Any, tz: str | None) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected text, got {type(value).__name__}")


def _to_int(value: Any, tz: str | None) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not an int")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("has a fractional part")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)  # "3.0" is an int written as a float (mixed input is text)
        except ValueError:
            raise ValueError("not a number") from None
        return _to_int(number, tz)
    raise TypeError(f"expected an int, got {type(value).__name__}")


def _to_float(value: Any, tz: str | None) -> float:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("must be finite")
    return number


def _to_bool(value: Any, tz: str | None) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError("expected true or false")


def _to_timestamp(value: Any, tz: str | None) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip())
    if not isinstance(value, datetime):
        raise TypeError(f"expected a timestamp, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        if tz is None:
            raise ValueError("is naive (no timezone) and the source declares no timezone")
        value = value.replace(tzinfo=zone(tz))
    to_micros(value)  # range check
    checked: datetime = value
    return checked


_SCALAR: dict[FieldType, Callable[[Any, str | None], Any]] = {
    FieldType.STRING: _to_string,
    FieldType.INT: _to_int,
    FieldType.FLOAT: _to_float,
    FieldType.BOOL: _to_bool,
    FieldType.TIMESTAMP: _to_timestamp,
}
