"""A USB/V4L2 camera by index through OpenCV (``camera.source = "0"`` or ``/dev/video0``)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from edge.door.sources.base import (
    CaptureBackend,
    Clock,
    Frame,
    LiveSource,
    Monotonic,
    SourceError,
    release,
    sane_fps,
    utc_now,
)

log = logging.getLogger("rollcall.sources")


def _default_device_capture(index: int) -> CaptureBackend:
    return cv2.VideoCapture(index)


class OpenCVDeviceSource(LiveSource):
    """A USB/V4L2 camera by index through OpenCV.

    The size and fps are asked of the driver, which may pick the nearest mode it has (the delivered size is logged
    when it differs). ``fourcc`` (such as ``"MJPG"``) asks for a pixel format; many USB cameras need MJPG for
    high resolutions at full rate.
    """

    def __init__(
        self,
        index: int,
        width: int = 1280,
        height: int = 720,
        fps: float = 10.0,
        *,
        fourcc: str | None = None,
        max_failed_reads: int = 10,
        capture_factory: Callable[[int], CaptureBackend] = _default_device_capture,
        clock: Clock = utc_now,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        super().__init__(clock=clock, monotonic=monotonic)
        if index < 0:
            raise ValueError(f"a camera index is 0 or more, got {index}")
        if fourcc is not None and len(fourcc) != 4:
            raise ValueError(f"fourcc is four characters such as 'MJPG', got {fourcc!r}")
        if max_failed_reads < 1:
            raise ValueError("max_failed_reads must be at least 1")
        self.index = index
        self.width = width
        self.height = height
        self._requested_fps = float(fps)
        self._fps = float(fps)
        self._fourcc = fourcc
        self._max_failed_reads = max_failed_reads
        self._factory = capture_factory
        self._cap: CaptureBackend | None = None
        self._pending: Any = None

    @property
    def fps(self) -> float:
        """What the driver reports once open (when it reports a sane value), else the fps asked for."""
        return self._fps

    def describe(self) -> str:
        """Names the camera and, on Linux, its device node."""
        if sys.platform.startswith("linux"):
            return f"camera {self.index} (/dev/video{self.index})"
        return f"camera {self.index}"

    def _hint(self) -> str:
        if sys.platform.startswith("linux"):
            return (
                "check the cable, `v4l2-ctl --list-devices`, that no other process holds the camera, "
                "that this user is in the video group, and the index in camera.source"
            )
        return "check the cable, that no other program holds the camera, and the index in camera.source"

    def _open(self) -> None:
        cap = self._factory(self.index)
        self._cap = cap
        if not cap.isOpened():
            raise SourceError(
                f"cannot open {self.describe()}: OpenCV could not open the device; {self._hint()}", self.describe()
            )
        if self._fourcc is not None:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self._fourcc))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self._requested_fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        reported = cap.get(cv2.CAP_PROP_FPS)
        self._fps = reported if sane_fps(reported) else self._requested_fps
        ok, image = cap.read()
        if not ok or image is None:
            raise SourceError(
                f"cannot open {self.describe()}: the device opened but delivered no frame; {self._hint()}",
                self.describe(),
            )
        self._start_clock()
        self._pending = image
        got_h, got_w = np.asarray(image).shape[:2]
        if (got_w, got_h) != (self.width, self.height):
            log.info(
                "%s delivers %dx%d; %dx%d was asked (the driver picked its nearest mode)",
                self.describe(),
                got_w,
                got_h,
                self.width,
                self.height,
            )

    def _read(self) -> Frame:
        if self._pending is not None:
            image, self._pending = self._pending, None
            return self._live_frame(image)
        assert self._cap is not None
        for _ in range(self._max_failed_reads):
            ok, image = self._cap.read()
            if ok and image is not None:
                return self._live_frame(image)
        raise SourceError(
            f"{self.describe()} stopped delivering frames ({self._max_failed_reads} reads failed in a row); "
            f"{self._hint()}",
            self.describe(),
        )

    def _close(self) -> None:
        cap, self._cap = self._cap, None
        self._pending = None
        release(cap)
