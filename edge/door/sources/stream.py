"""An RTSP or HTTP(S) camera stream through OpenCV's FFmpeg backend, reconnecting with backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cv2

from edge.door.sources.base import (
    CaptureBackend,
    Clock,
    Frame,
    LiveSource,
    Monotonic,
    Sleep,
    SourceError,
    release,
    sane_fps,
    utc_now,
)

log = logging.getLogger("rollcall.sources")

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, parts.fragment))


STREAM_TIMEOUT_MS = 10_000
"""How long OpenCV's FFmpeg backend waits to connect to, or read from, a stream before giving up."""


def _default_stream_capture(url: str) -> CaptureBackend:
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


class StreamSource(LiveSource):
    """An RTSP or HTTP(S) camera stream through OpenCV's FFmpeg backend.

    Opening tries ``open_attempts`` times with backoff, then raises :class:`SourceError`. Once streaming, a failed
    read does not end the stream: the source reconnects with exponential backoff (``backoff_min_s`` doubling up to
    ``backoff_max_s``; the delay starts again from the minimum once a frame arrives), logs each attempt, counts
    ``reconnect_attempts`` and, once frames flow again, ``reconnects``. ``max_reconnect_attempts`` (None: forever)
    bounds one outage. The stream's picture size is the camera's own setting: ``width``/``height`` are only
    compared with what arrives and a difference is logged.
    """

    def __init__(
        self,
        url: str,
        width: int | None = None,
        height: int | None = None,
        fps: float = 10.0,
        *,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
        open_attempts: int = 3,
        max_reconnect_attempts: int | None = None,
        capture_factory: Callable[[str], CaptureBackend] = _default_stream_capture,
        clock: Clock = utc_now,
        monotonic: Monotonic = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(clock=clock, monotonic=monotonic)
        scheme = urlsplit(url).scheme.lower()
        if scheme not in STREAM_SCHEMES:
            raise SourceError(
                f"{redact_url(url)!r} is not a stream URL: the scheme must be one of {', '.join(STREAM_SCHEMES)}",
                redact_url(url),
            )
        if not 0 < backoff_min_s <= backoff_max_s:
            raise ValueError(f"need 0 < backoff_min_s <= backoff_max_s, got {backoff_min_s} and {backoff_max_s}")
        if open_attempts < 1:
            raise ValueError("open_attempts must be at least 1")
        if max_reconnect_attempts is not None and max_reconnect_attempts < 1:
            raise ValueError("max_reconnect_attempts must be at least 1, or None to retry forever")
        self.url = url
        self.width = width
        self.height = height
        self._requested_fps = float(fps)
        self._fps = float(fps)
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.open_attempts = open_attempts
        self.max_reconnect_attempts = max_reconnect_attempts
        self._factory = capture_factory
        self._sleep = sleep
        self._cap: CaptureBackend | None = None
        self._outage_attempts = 0
        self._in_outage = False
        self._size_checked = False
        self.reconnects = 0
        """Outages recovered from: frames flowed again after the stream was lost."""
        self.reconnect_attempts = 0
        """Connection attempts made after the stream was lost (successful or not)."""

    @property
    def fps(self) -> float:
        """What the stream reports once open (when sane), else the fps given."""
        return self._fps

    def describe(self) -> str:
        """Names the stream with any password masked."""
        return f"stream {redact_url(self.url)}"

    def backoff_delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (0-based) of one outage: doubling, capped."""
        return min(self.backoff_max_s, self.backoff_min_s * 2.0 ** min(attempt, 62))

    def _connect(self) -> CaptureBackend | None:
        try:
            cap = self._factory(self.url)
        except Exception as exc:
            log.warning("%s: could not connect: %s", self.describe(), exc)
            return None
        if cap.isOpened():
            reported = cap.get(cv2.CAP_PROP_FPS)
            self._fps = reported if sane_fps(reported) else self._requested_fps
            return cap
        cap.release()
        return None

    def _open(self) -> None:
        self.reconnects = 0
        self.reconnect_attempts = 0
        self._outage_attempts = 0
        self._in_outage = False
        self._size_checked = False
        for attempt in range(self.open_attempts):
            if attempt:
                delay = self.backoff_delay(attempt - 1)
                log.warning(
                    "%s: could not connect; attempt %d of %d in %.1f s",
                    self.describe(),
                    attempt + 1,
                    self.open_attempts,
                    delay,
                )
                self._sleep(delay)
            cap = self._connect()
            if cap is not None:
                self._cap = cap
                self._start_clock()
                return
        raise SourceError(
            f"cannot open {self.describe()}: OpenCV could not connect after {self.open_attempts} attempt(s); "
            "check the URL and credentials in camera.source, that the camera is reachable from this device "
            "(`ffprobe URL`), and that it serves H.264/H.265 or MJPEG",
            self.describe(),
        )

    def _read(self) -> Frame:
        while True:
            if self._cap is not None:
                ok, image = self._cap.read()
                if ok and image is not None:
                    return self._delivered(image)
                self._lost()
            self._reconnect_once()

    def _delivered(self, image: Any) -> Frame:
        if self._in_outage:
            self.reconnects += 1
            log.warning("%s: frames flow again after %d reconnect attempt(s)", self.describe(), self._outage_attempts)
            self._in_outage = False
        self._outage_attempts = 0
        frame = self._live_frame(image)
        if not self._size_checked:
            self._size_checked = True
            got_h, got_w = frame.image.shape[:2]
            if self.width is not None and self.height is not None and (got_w, got_h) != (self.width, self.height):
                log.info(
                    "%s delivers %dx%d, camera.width/height ask %dx%d: set the size in the camera's own settings "
                    "(frames are not resized)",
                    self.describe(),
                    got_w,
                    got_h,
                    self.width,
                    self.height,
                )
        return frame

    def _lost(self) -> None:
        cap, self._cap = self._cap, None
        release(cap)
        if not self._in_outage:
            log.warning("%s: stream lost (read failed); reconnecting with backoff", self.describe())
        self._in_outage = True

    def _reconnect_once(self) -> None:
        limit = self.max_reconnect_attempts
        if limit is not None and self._outage_attempts >= limit:
            raise SourceError(
                f"{self.describe()} was lost and {limit} reconnect attempt(s) failed; check that the camera is "
                "powered and reachable from this device",
                self.describe(),
            )
        delay = self.backoff_delay(self._outage_attempts)
        self._outage_attempts += 1
        self.reconnect_attempts += 1
        log.warning("%s: reconnect attempt %d in %.1f s", self.describe(), self._outage_attempts, delay)
        self._sleep(delay)
        self._cap = self._connect()

    def _close(self) -> None:
        cap, self._cap = self._cap, None
        release(cap)
