"""Time helpers every role shares: the aware-datetime check, one ISO 8601 form for UTC instants, weekday names."""

from __future__ import annotations

from datetime import UTC, datetime

# Lower-case English weekday names, Monday first (``datetime.weekday()`` indexes this), as config files spell them.
WEEKDAYS: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def require_aware(value: datetime, what: str) -> datetime:
    """``value`` unchanged when it carries a UTC offset; ``ValueError`` naming ``what`` when it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime (UTC), got naive {value.isoformat()}")
    return value


def as_utc(value: datetime, what: str) -> datetime:
    """An aware ``value`` converted to UTC; ``ValueError`` naming ``what`` when it is naive."""
    return require_aware(value, what).astimezone(UTC)


def iso_utc(value: datetime | None) -> str | None:
    """An instant as ISO 8601 in UTC with a ``Z`` suffix (``2026-03-02T08:00:00Z``); ``None`` stays ``None``."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
