"""Wire payloads for tests: `make_event` builds a recognition `wire.Event` from only the fields a test cares about."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ulid import ULID

from edge.protocol import wire


def make_event(
    *,
    at: datetime,
    device: str = "door-1",
    seq: int = 1,
    person_id: str | None = None,
    type: Literal["seen", "left"] = "seen",
    has_snapshot: bool = False,
    event_id: str | None = None,
    score: float | None = None,
    margin: float | None = None,
    track: int | None = None,
    quality: float = 0.8,
    gallery_version: int | None = None,
) -> wire.Event:
    """A recognition event as a door device sends it; the fields mean what they mean in ``wire.Event``.

    Unset fields get values a real door would send: a fresh ULID, the track numbered like the sequence, and the
    score and margin of a confident match for a known person or of a weak one for an unknown face (``person_id``
    None), so a test names only what it is about.
    """
    known = person_id is not None
    return wire.Event(
        event_id=event_id if event_id is not None else str(ULID()),
        device=device,
        seq=seq,
        at=at,
        type=type,
        person_id=person_id,
        score=score if score is not None else (0.72 if known else 0.2),
        margin=margin if margin is not None else (0.2 if known else 0.02),
        track=track if track is not None else seq,
        quality=quality,
        has_snapshot=has_snapshot,
        gallery_version=gallery_version,
    )
