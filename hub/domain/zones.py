"""The site's time zone: an IANA name checked once, with a message that says what to write instead."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def site_zone(timezone: str) -> ZoneInfo:
    """The time zone ``timezone`` names; ``ValueError`` when it is no IANA name."""
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r}; use an IANA name such as 'Europe/Berlin'") from None
