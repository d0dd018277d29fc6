"""Supervisor commands that need camera frames: a snapshot, and the capture of enrolment pictures of one person."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np
from ulid import ULID

from edge.door.sources import Image
from edge.protocol import wire
from edge.recognition.faces import FaceEngine
from edge.runtime.outbox import Outbox, OutboxFull

log = logging.getLogger("rollcall.edge")

ENROL_SPACING_S = 0.3
ENROL_TIMEOUT_S = 30.0
SNAPSHOT_MAX_WIDTH = 1280


@dataclass
class _EnrolmentCapture:
    """An enrolment capture in progress: it takes pictures from the frames until it has ``total`` or times out."""

    command: wire.DeviceCommand
    total: int
    deadline_pts: float | None = None
    taken: int = 0
    last_pts: float = float("-inf")


def _jpeg(image: Image, max_width: int) -> tuple[bytes, int, int]:
    height, width = image.shape[:2]
    if width > max_width:
        scale = max_width / width
        image = np.asarray(cv2.resize(image, (max_width, max(1, round(height * scale))), interpolation=cv2.INTER_AREA))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return encoded.tobytes(), int(image.shape[1]), int(image.shape[0])


class FrameCommands:
    """Carries out ``snapshot`` and ``enrol_capture`` on the camera thread; the pictures go out as wire Captures.

    Each picture is stored in the outbox (the hub acks captures like events) and ``wake`` tells the publisher.
    """

    def __init__(
        self, device: str, topics: wire.Topics, outbox: Outbox, engine: FaceEngine, wake: Callable[[], None]
    ) -> None:
        self.device = device
        self.topics = topics
        self.outbox = outbox
        self.engine = engine
        self._wake = wake
        self._enrolment: _EnrolmentCapture | None = None

    @property
    def capturing(self) -> bool:
        """Whether an enrolment capture is in progress (it needs the coming frames)."""
        return self._enrolment is not None

    def snapshot(self, command: wire.DeviceCommand, image: Image, at: datetime) -> None:
        """Store the frame (at most :data:`SNAPSHOT_MAX_WIDTH` wide) as the answer to a snapshot command."""
        data, width, height = _jpeg(image, SNAPSHOT_MAX_WIDTH)
        self._store_capture(command, "snapshot", 0, 1, True, None, None, data, width, height, at)

    def begin_enrolment(self, command: wire.DeviceCommand, pts_s: float) -> None:
        """Start taking ``command.count`` (default 5) enrolment pictures from the coming frames."""
        total = command.count or 5
        self._enrolment = _EnrolmentCapture(command, total, deadline_pts=pts_s + ENROL_TIMEOUT_S)

    def continue_enrolment(self, image: Image, at: datetime, pts_s: float) -> None:
        """Take this frame's best face as the next enrolment picture when it is usable and spaced enough."""
        capture = self._enrolment
        assert capture is not None
        if capture.deadline_pts is not None and pts_s > capture.deadline_pts:
            message = (
                f"nobody usable at the camera for {ENROL_TIMEOUT_S:.0f} s; {capture.taken} of {capture.total} taken"
            )
            if capture.taken:
                log.warning("enrolment capture %s ended early: %s", capture.command.command_id, message)
            data, width, height = _jpeg(image, 320)
            index = min(capture.taken, capture.total - 1)
            self._store_capture(
                capture.command, "enrol", index, capture.total, True, message, None, data, width, height, at
            )
            self._enrolment = None
            return
        if pts_s - capture.last_pts < ENROL_SPACING_S:
            return
        faces = self.engine.observe(image)
        if not faces:
            return
        face = max(faces, key=lambda o: o.detection.area)
        if face.quality.problems(self.engine.limits):
            return
        x1, y1, x2, y2 = face.detection.box
        pad_w, pad_h = (x2 - x1) * 0.3, (y2 - y1) * 0.3
        h, w = image.shape[:2]
        crop = image[
            max(0, int(y1 - pad_h)) : min(h, int(y2 + pad_h)), max(0, int(x1 - pad_w)) : min(w, int(x2 + pad_w))
        ]
        data, width, height = _jpeg(np.ascontiguousarray(crop), 320)
        final = capture.taken + 1 >= capture.total
        self._store_capture(
            capture.command,
            "enrol",
            capture.taken,
            capture.total,
            final,
            None,
            face.quality.score,
            data,
            width,
            height,
            at,
        )
        capture.taken += 1
        capture.last_pts = pts_s
        if final:
            self._enrolment = None

    def _store_capture(
        self,
        command: wire.DeviceCommand,
        purpose: str,
        index: int,
        total: int,
        final: bool,
        message: str | None,
        quality: float | None,
        data: bytes,
        width: int,
        height: int,
        at: datetime,
    ) -> None:
        capture_id = str(ULID())
        payload = wire.Capture(
            capture_id=capture_id,
            device=self.device,
            command_id=command.command_id,
            at=at,
            purpose="enrol" if purpose == "enrol" else "snapshot",
            person_id=command.person_id if purpose == "enrol" else None,
            index=index,
            total=total,
            final=final,
            message=message,
            quality=None if quality is None else max(0.0, min(1.0, quality)),
            content_type="image/jpeg",
            width=width,
            height=height,
            data=data,
        )
        encoded = wire.encode(payload)
        try:
            self.outbox.add(lambda seq: (capture_id, self.topics.device_capture(self.device), encoded))
        except OutboxFull:
            log.error("outbox full: capture refused")
        self._wake()
