"""The Raspberry Pi camera through picamera2 (``camera.source = "picamera2"``)."""

from __future__ import annotations

import logging
import time
from typing import Any

from edge.door.sources.base import Clock, Frame, LiveSource, Monotonic, SourceError, sane_fps, utc_now

log = logging.getLogger("rollcall.sources")


class Picamera2Source(LiveSource):
    """The Raspberry Pi camera through picamera2 (imported only when opened; it exists only on Raspberry Pi OS)."""

    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        fps: float = 10.0,
        *,
        clock: Clock = utc_now,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        super().__init__(clock=clock, monotonic=monotonic)
        if width <= 0 or height <= 0 or not sane_fps(fps):
            raise ValueError(f"picamera2 needs a positive size and fps, got {width}x{height} @ {fps}")
        self.width = width
        self.height = height
        self._fps = float(fps)
        self._camera: Any = None

    @property
    def fps(self) -> float:
        """The frame rate asked of the camera."""
        return self._fps

    def describe(self) -> str:
        """Names the camera."""
        return f"Raspberry Pi camera (picamera2, {self.width}x{self.height} @ {self._fps:g} fps)"

    def _open(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError as exc:
            raise SourceError(
                f"cannot open the {self.describe()}: the picamera2 module is missing ({exc}). picamera2 exists only "
                "on Raspberry Pi OS: `sudo apt install python3-picamera2`, and create rollcall's virtualenv with "
                "`python3 -m venv --system-site-packages` so it can see the system package. Elsewhere set "
                "camera.source to a camera index, a URL, a video file or a folder of images.",
                self.describe(),
            ) from exc
        try:
            camera = Picamera2()
            self._camera = camera
            # libcamera's "RGB888" is laid out B, G, R in memory: what OpenCV calls BGR.
            config = camera.create_video_configuration(
                main={"size": (self.width, self.height), "format": "RGB888"},
                controls={"FrameRate": self._fps},
            )
            camera.configure(config)
            camera.start()
        except Exception as exc:
            raise SourceError(
                f"cannot open the {self.describe()}: {exc}; check the ribbon cable, `rpicam-hello --list-cameras`, "
                "and that no other process is using the camera",
                self.describe(),
            ) from exc
        self._start_clock()

    def _read(self) -> Frame:
        try:
            image = self._camera.capture_array("main")
        except Exception as exc:
            raise SourceError(f"{self.describe()} stopped delivering frames: {exc}", self.describe()) from exc
        return self._live_frame(image)

    def _close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is None:
            return
        try:
            camera.stop()
        except Exception:
            log.warning("%s: stop failed", self.describe(), exc_info=True)
        try:
            camera.close()
        except Exception:
            log.warning("%s: close failed", self.describe(), exc_info=True)
