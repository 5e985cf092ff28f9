"""Time as crmfs stores it: integer microseconds since the Unix epoch, UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crmfs.errors import ConfigError

MICROS_PER_SECOND = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")

Duration = str | timedelta | int


def to_micros(value: datetime) -> int:
    """UTC microseconds of an aware datetime. Naive datetimes are refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp {value.isoformat()} has no timezone")
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


def from_micros(micros: int) -> datetime:
    """Aware UTC datetime of a microsecond timestamp."""
    return _EPOCH + timedelta(microseconds=micros)


def now_micros() -> int:
    """The wall clock in UTC microseconds."""
    return to_micros(datetime.now(UTC))


def parse_duration(value: Duration) -> int:
    """Seconds of a duration: ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``, ``"2w"``, a timedelta or int seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, timedelta):
        if value.microseconds:
            raise ValueError(f"duration {value} is not a whole number of seconds")
        seconds = int(value.total_seconds())
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. '30s', '15m', '1h', '7d', '2w')")
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"not a duration: {value!r}")
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact spelling of a duration: 3600 → ``"1h"``."""
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def zone(name: str) -> ZoneInfo:
    """A timezone by IANA name, with a clear error for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown timezone {name!r}") from exc
