"""Face events of the door device as wire messages: the event, its optional snapshot, stored in the outbox."""

from __future__ import annotations

import logging

import cv2
import numpy as np
from ulid import ULID

from edge.protocol import wire
from edge.recognition.pipeline import FaceEvent
from edge.runtime.outbox import Outbox, OutboxFull, OutboxMessage, OutboxWriteFailed

log = logging.getLogger("rollcall.edge")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return (int(decoded.shape[1]), int(decoded.shape[0])) if decoded is not None else (1, 1)


def store_event(
    outbox: Outbox, topics: wire.Topics, device: str, event: FaceEvent, gallery_version: int | None
) -> OutboxMessage | None:
    """Store one event (and its snapshot as the attachment) durably, numbered in order; None when the outbox is full."""
    event_id = str(ULID())

    def build(seq: int) -> tuple[str, str, bytes]:
        payload = wire.Event(
            event_id=event_id,
            device=device,
            seq=seq,
            at=event.at,
            type=event.type,
            person_id=event.person_id,
            score=max(-1.0, min(1.0, event.score)),
            margin=max(0.0, min(2.0, event.margin)),
            track=event.track,
            quality=max(0.0, min(1.0, event.quality)),
            has_snapshot=event.snapshot_jpeg is not None,
            gallery_version=gallery_version,
            epoch=outbox.epoch,
        )
        return event_id, topics.device_event(device), wire.encode(payload)

    attachment = None
    if event.snapshot_jpeg is not None:
        width, height = _jpeg_size(event.snapshot_jpeg)
        snapshot = wire.Snapshot(
            event_id=event_id,
            device=device,
            at=event.at,
            content_type="image/jpeg",
            width=width,
            height=height,
            data=event.snapshot_jpeg,
        )
        attachment = (topics.device_snapshot(device), wire.encode(snapshot))
    try:
        return outbox.add(build, attachment)
    except OutboxWriteFailed:
        return None  # the disk refused it: counted in health, and the outbox logs the outage once
    except OutboxFull:
        log.error("outbox full: event refused (counted in health); is the hub acking?")
        return None
