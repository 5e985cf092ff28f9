"""Times given on the command line."""

from __future__ import annotations

from datetime import datetime

from crmfs.errors import ConfigError


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time with a timezone, or None; errors name the option."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option}: {value!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise ConfigError(f"{option}: {value!r} has no timezone (add Z or +00:00)")
    return parsed
