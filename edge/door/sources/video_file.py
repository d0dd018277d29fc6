"""A video file decoded by OpenCV (FFmpeg), for replays, demos and tests."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import cv2

from edge.door.sources.base import (
    CaptureBackend,
    Clock,
    Image,
    Monotonic,
    ReplaySource,
    Sleep,
    SourceError,
    as_bgr,
    release,
    sane_fps,
    utc_now,
)

log = logging.getLogger("rollcall.sources")

DEFAULT_FILE_FPS = 25.0
"""Frame rate assumed for a video file whose container does not say, when no ``fps`` is given."""


def _default_file_capture(path: str) -> CaptureBackend:
    return cv2.VideoCapture(path)


class VideoFileSource(ReplaySource):
    """A video file decoded by OpenCV (FFmpeg), for replays, demos and tests.

    ``fps`` is the file's own frame rate; the ``fps`` argument is used only when the container does not say
    (default 25). Frames keep the file's size.
    """

    def __init__(
        self,
        path: str | Path,
        loop: bool = False,
        realtime: bool = False,
        *,
        fps: float | None = None,
        start_at: datetime | None = None,
        capture_factory: Callable[[str], CaptureBackend] = _default_file_capture,
        clock: Clock = utc_now,
        monotonic: Monotonic = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(loop=loop, realtime=realtime, start_at=start_at, clock=clock, monotonic=monotonic, sleep=sleep)
        if fps is not None and not sane_fps(fps):
            raise ValueError(f"fps must be in (0, 1000], got {fps}")
        self.path = Path(path)
        self._fallback_fps = fps
        self._fps = fps if fps is not None else DEFAULT_FILE_FPS
        self._factory = capture_factory
        self._cap: CaptureBackend | None = None
        self._pending: Image | None = None
        self._position = 0

    @property
    def fps(self) -> float:
        """The file's frame rate once open (or the fallback)."""
        return self._fps

    def describe(self) -> str:
        """Names the file."""
        return f"video file {self.path}"

    def _capture(self) -> CaptureBackend:
        cap = self._factory(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot open {self.describe()}: OpenCV could not decode it (an unsupported container or codec, "
                "or not a video); check camera.source",
                self.describe(),
            )
        return cap

    def _open(self) -> None:
        if not self.path.exists():
            raise SourceError(f"cannot open {self.describe()}: no such file; check camera.source", self.describe())
        if not self.path.is_file():
            raise SourceError(f"cannot open {self.describe()}: not a regular file", self.describe())
        self._cap = self._capture()
        reported = self._cap.get(cv2.CAP_PROP_FPS)
        if sane_fps(reported):
            self._fps = reported
        else:
            self._fps = self._fallback_fps if self._fallback_fps is not None else DEFAULT_FILE_FPS
            log.warning("%s does not state its frame rate; assuming %g fps", self.describe(), self._fps)
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceError(f"cannot open {self.describe()}: it has no readable frames", self.describe())
        self._pending = as_bgr(image, self.describe())
        self._position = 0
        self._start_replay()

    def _next_image(self) -> tuple[int, Image] | None:
        if self._pending is not None:
            image, self._pending = self._pending, None
        else:
            assert self._cap is not None
            ok, raw = self._cap.read()
            if not ok or raw is None:
                return None
            image = as_bgr(raw, self.describe())
        position = self._position
        self._position += 1
        return position, image

    def _rewind(self) -> int:
        finished = self._position
        self._position = 0
        assert self._cap is not None
        if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            self._cap.release()
            self._cap = self._capture()
        return finished

    def _empty_pass(self) -> None:
        raise SourceError(f"{self.describe()}: no frame could be read on a pass through the file", self.describe())

    def _close(self) -> None:
        cap, self._cap = self._cap, None
        self._pending = None
        release(cap)
