"""Reading the hub's JSON replies: lists of rows, ISO 8601 times and snapshot bytes (no Textual in here)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any


def rows_of(result: Any) -> list[dict[str, Any]] | None:
    """The objects of a reply that should be a list of rows (others dropped); None when it is not a list."""
    if not isinstance(result, list):
        return None
    return [row for row in result if isinstance(row, dict)]


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time from a hub reply, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def snapshot_data(result: Any) -> bytes | None:
    """The image bytes of a ``snapshot.get`` reply, or None when it carries none."""
    if isinstance(result, dict) and isinstance(result.get("data_b64"), str):
        return base64.b64decode(result["data_b64"])
    return None
