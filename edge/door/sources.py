"""Frame sources of the door device: picamera2, an OpenCV camera index, an RTSP/HTTP stream, a video file, images."""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np
from numpy.typing import NDArray

log = logging.getLogger("rollcall.sources")

Image = NDArray[np.uint8]
"""A BGR picture, ``uint8``, shape ``(height, width, 3)``."""

Clock = Callable[[], datetime]
"""Wall-clock time, UTC-aware (``datetime.now(UTC)`` unless a test injects another)."""

Monotonic = Callable[[], float]
Sleep = Callable[[float], None]

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_FILE_FPS = 25.0
"""Frame rate assumed for a video file whose container does not say, when no ``fps`` is given."""

ACCEPTED_FORMS = (
    "'picamera2' (Raspberry Pi camera), a camera index such as '0' or '/dev/video0', "
    "an rtsp://, rtsps://, http:// or https:// URL, an existing video file, or an existing folder of images "
    f"({', '.join(IMAGE_SUFFIXES)})"
)


class SourceError(RuntimeError):
    """A frame source cannot be opened or read; the message names the source and what to check."""

    def __init__(self, message: str, source: str = "") -> None:
        super().__init__(message)
        self.source = source


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One picture from a source."""

    image: Image
    """BGR, ``uint8``, ``(height, width, 3)``; never resized by the source."""
    index: int
    """Frame number from the source, from 0 at open; it keeps counting across file loops and stream reconnects."""
    at: datetime
    """UTC-aware time of the frame: the wall clock for live sources, ``start_at + pts_s`` for files and folders."""
    pts_s: float
    """Seconds since the source started: media time (``index / fps``) for files and folders, monotonic for cameras."""


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` the sources use (tests inject fakes)."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, Any]: ...

    def set(self, prop_id: int, value: float, /) -> bool: ...

    def get(self, prop_id: int, /) -> float: ...

    def release(self) -> None: ...


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value


def _sane_fps(value: float) -> bool:
    return math.isfinite(value) and 0 < value <= 1000


def _as_bgr(image: Any, source: str) -> Image:
    """Checks and normalises a decoded picture to contiguous BGR ``uint8`` with 3 channels."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise SourceError(f"{source} delivered {array.dtype} pixels; expected 8-bit images", source)
    if array.ndim == 2:
        array = cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = np.ascontiguousarray(array[:, :, :3])
    elif array.ndim == 3 and array.shape[2] == 1:
        array = cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise SourceError(f"{source} delivered a picture of shape {array.shape}; expected height x width x 3", source)
    return np.ascontiguousarray(array)


class FrameSource(ABC):
    """Where frames come from. Not thread-safe and starts no threads: the caller owns the thread that reads.

    ``open()`` is idempotent and ``close()`` may be called any number of times; a closed source can be opened
    again. ``read()`` returns the next frame, or None at the end of a file or folder (live sources never end:
    they raise :class:`SourceError` when they cannot go on). Iterating opens the source and yields frames until
    the end; ``with source:`` opens it and closes it afterwards.
    """

    def __init__(self) -> None:
        self._is_open = False

    @property
    def is_open(self) -> bool:
        """Whether ``open()`` succeeded and ``close()`` has not been called since."""
        return self._is_open

    @property
    @abstractmethod
    def fps(self) -> float:
        """Nominal frames per second (what the source reports once open, else what was asked for)."""

    @abstractmethod
    def describe(self) -> str:
        """Names the source for logs and errors (credentials in URLs are masked)."""

    def open(self) -> None:
        """Opens the source; raises :class:`SourceError` naming it when it cannot."""
        if self._is_open:
            return
        try:
            self._open()
        except BaseException:
            self._close()
            raise
        self._is_open = True
        log.info("opened %s", self.describe())

    def read(self) -> Frame | None:
        """The next frame; None at the end of a file or folder."""
        if not self._is_open:
            raise SourceError(f"{self.describe()} is not open: call open() or use it in a with block", self.describe())
        return self._read()

    def close(self) -> None:
        """Releases the device or file; safe to call again."""
        was_open = self._is_open
        self._is_open = False
        self._close()
        if was_open:
            log.info("closed %s", self.describe())

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        self.open()
        while (frame := self.read()) is not None:
            yield frame

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _read(self) -> Frame | None: ...

    @abstractmethod
    def _close(self) -> None:
        """Releases whatever ``_open`` acquired; must be safe when nothing (or only part) was acquired."""


class _LiveSource(FrameSource):
    """A camera: frames are stamped with the wall clock and a monotonic time since open."""

    def __init__(self, *, clock: Clock = utc_now, monotonic: Monotonic = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._monotonic = monotonic
        self._started = 0.0
        self._next_index = 0

    def _start_clock(self) -> None:
        self._started = self._monotonic()
        self._next_index = 0

    def _live_frame(self, image: Any) -> Frame:
        frame = Frame(
            image=_as_bgr(image, self.describe()),
            index=self._next_index,
            at=_aware(self._clock(), "the source clock"),
            pts_s=max(0.0, self._monotonic() - self._started),
        )
        self._next_index += 1
        return frame


class Picamera2Source(_LiveSource):
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
        if width <= 0 or height <= 0 or not _sane_fps(fps):
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


def _default_device_capture(index: int) -> Capture:
    return cv2.VideoCapture(index)


class OpenCVDeviceSource(_LiveSource):
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
        capture_factory: Callable[[int], Capture] = _default_device_capture,
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
        self._cap: Capture | None = None
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
        self._fps = reported if _sane_fps(reported) else self._requested_fps
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
        if cap is not None:
            cap.release()


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


def _default_stream_capture(url: str) -> Capture:
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


class StreamSource(_LiveSource):
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
        capture_factory: Callable[[str], Capture] = _default_stream_capture,
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
        self._cap: Capture | None = None
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

    def _connect(self) -> Capture | None:
        try:
            cap = self._factory(self.url)
        except Exception as exc:
            log.warning("%s: could not connect: %s", self.describe(), exc)
            return None
        if cap.isOpened():
            reported = cap.get(cv2.CAP_PROP_FPS)
            self._fps = reported if _sane_fps(reported) else self._requested_fps
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
        if cap is not None:
            cap.release()
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
        if cap is not None:
            cap.release()


class _ReplaySource(FrameSource):
    """A recorded source (file or folder): media-time stamps, optional looping and real-time pacing.

    ``pts_s`` is ``index / fps`` and ``at`` is ``start_at + pts_s``, so a replay with a fixed ``start_at`` gives
    the same stamps every time. ``start_at`` defaults to the clock at open. With ``loop`` the source starts again
    at the end; ``index`` (and so ``pts_s`` and ``at``) keeps counting up and ``loops`` counts the restarts.
    ``realtime`` paces reads to ``fps`` (a late caller is not caught up with a burst); by default frames come as
    fast as they can be decoded. Pictures are delivered at their own size and never resized.
    """

    def __init__(
        self,
        *,
        loop: bool,
        realtime: bool,
        start_at: datetime | None,
        clock: Clock,
        monotonic: Monotonic,
        sleep: Sleep,
    ) -> None:
        super().__init__()
        self.loop = loop
        self.realtime = realtime
        self._start_at_arg = None if start_at is None else _aware(start_at, "start_at")
        self._start_at = self._start_at_arg
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._pass_base = 0
        self._delivered_in_pass = 0
        self._pace_origin = 0.0
        self.loops = 0
        """How many times a looping source started again from the beginning."""

    @property
    def start_at(self) -> datetime | None:
        """The wall-clock time of pts 0 (known once open unless given)."""
        return self._start_at

    def _start_replay(self) -> None:
        self._start_at = self._start_at_arg or _aware(self._clock(), "the source clock")
        self._pass_base = 0
        self._delivered_in_pass = 0
        self.loops = 0
        self._pace_origin = self._monotonic()

    @abstractmethod
    def _next_image(self) -> tuple[int, Image] | None:
        """The next picture of this pass and its position in the pass; None at the end of the pass."""

    @abstractmethod
    def _rewind(self) -> int:
        """Starts the next pass; returns the number of positions the finished pass had."""

    @abstractmethod
    def _empty_pass(self) -> None:
        """A whole pass delivered nothing: raise the right error, or return to end the stream."""

    def _read(self) -> Frame | None:
        while True:
            got = self._next_image()
            if got is not None:
                break
            if self._delivered_in_pass == 0:
                self._empty_pass()
                return None
            if not self.loop:
                return None
            self._pass_base += self._rewind()
            self._delivered_in_pass = 0
            self.loops += 1
            log.debug("%s: looping (pass %d)", self.describe(), self.loops + 1)
        position, image = got
        self._delivered_in_pass += 1
        index = self._pass_base + position
        pts = index / self.fps
        if self.realtime:
            self._pace(pts)
        assert self._start_at is not None
        return Frame(image=image, index=index, at=self._start_at + timedelta(seconds=pts), pts_s=pts)

    def _pace(self, pts: float) -> None:
        due = self._pace_origin + pts
        now = self._monotonic()
        if due > now:
            self._sleep(due - now)
        elif now - due > 1.0 / self.fps:
            self._pace_origin = now - pts  # late by more than a frame: go on from here rather than burst


def _default_file_capture(path: str) -> Capture:
    return cv2.VideoCapture(path)


class VideoFileSource(_ReplaySource):
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
        capture_factory: Callable[[str], Capture] = _default_file_capture,
        clock: Clock = utc_now,
        monotonic: Monotonic = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(loop=loop, realtime=realtime, start_at=start_at, clock=clock, monotonic=monotonic, sleep=sleep)
        if fps is not None and not _sane_fps(fps):
            raise ValueError(f"fps must be in (0, 1000], got {fps}")
        self.path = Path(path)
        self._fallback_fps = fps
        self._fps = fps if fps is not None else DEFAULT_FILE_FPS
        self._factory = capture_factory
        self._cap: Capture | None = None
        self._pending: Image | None = None
        self._position = 0

    @property
    def fps(self) -> float:
        """The file's frame rate once open (or the fallback)."""
        return self._fps

    def describe(self) -> str:
        """Names the file."""
        return f"video file {self.path}"

    def _capture(self) -> Capture:
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
        if _sane_fps(reported):
            self._fps = reported
        else:
            self._fps = self._fallback_fps if self._fallback_fps is not None else DEFAULT_FILE_FPS
            log.warning("%s does not state its frame rate; assuming %g fps", self.describe(), self._fps)
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceError(f"cannot open {self.describe()}: it has no readable frames", self.describe())
        self._pending = _as_bgr(image, self.describe())
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
            image = _as_bgr(raw, self.describe())
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
        if cap is not None:
            cap.release()


def _natural_key(path: Path) -> tuple[tuple[int, int | str], ...]:
    """Sorts ``img2`` before ``img10``."""
    parts = re.split(r"(\d+)", path.name.lower())
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts if part)


class ImageFolderSource(_ReplaySource):
    """The images in one folder (not its subfolders), in natural name order (``2.png`` before ``10.png``).

    Files ending in .jpg, .jpeg, .png, .bmp or .webp (any case) are used; hidden files are ignored. An image that
    cannot be decoded is skipped with a logged warning (once per file) and counted in ``skipped``; its position
    still counts, so ``index`` and the stamps leave a gap as for a dropped frame. A folder with no images is a
    :class:`SourceError` at open, and so is a pass in which no image could be read. Images keep their size.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float = 10.0,
        loop: bool = False,
        realtime: bool = False,
        *,
        start_at: datetime | None = None,
        clock: Clock = utc_now,
        monotonic: Monotonic = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(loop=loop, realtime=realtime, start_at=start_at, clock=clock, monotonic=monotonic, sleep=sleep)
        if not _sane_fps(fps):
            raise ValueError(f"fps must be in (0, 1000], got {fps}")
        self.path = Path(path)
        self._fps = float(fps)
        self.files: list[Path] = []
        """The images found at open, in the order they are delivered."""
        self._position = 0
        self._unreadable: set[Path] = set()
        self.skipped = 0
        """Distinct images that could not be read."""

    @property
    def fps(self) -> float:
        """The rate the images stand for."""
        return self._fps

    def describe(self) -> str:
        """Names the folder."""
        return f"image folder {self.path}"

    def _open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"cannot open {self.describe()}: no such folder; check camera.source", self.describe())
        self.files = sorted(
            (
                entry
                for entry in self.path.iterdir()
                if entry.suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".") and entry.is_file()
            ),
            key=_natural_key,
        )
        if not self.files:
            raise SourceError(
                f"cannot open {self.describe()}: it holds no images ({', '.join(IMAGE_SUFFIXES)})", self.describe()
            )
        self._position = 0
        self._unreadable = set()
        self.skipped = 0
        self._start_replay()

    def _decode(self, path: Path) -> Image | None:
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            log.warning("%s: skipping %s: %s", self.describe(), path.name, exc)
            return None
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            log.warning("%s: skipping %s: not a readable image", self.describe(), path.name)
            return None
        return _as_bgr(image, f"{self.describe()} ({path.name})")

    def _next_image(self) -> tuple[int, Image] | None:
        while self._position < len(self.files):
            position = self._position
            self._position += 1
            path = self.files[position]
            if path in self._unreadable:
                continue
            image = self._decode(path)
            if image is None:
                self._unreadable.add(path)
                self.skipped += 1
                continue
            return position, image
        return None

    def _rewind(self) -> int:
        self._position = 0
        return len(self.files)

    def _empty_pass(self) -> None:
        raise SourceError(
            f"{self.describe()}: none of its {len(self.files)} image(s) could be read; see the warnings above",
            self.describe(),
        )

    def _close(self) -> None:
        self._position = 0


_DEVICE_NODE = re.compile(r"^/dev/video(\d+)$")


def open_source(
    spec: str,
    width: int = 1280,
    height: int = 720,
    fps: float = 10.0,
    **opts: Any,
) -> FrameSource:
    """The source that ``camera.source`` names, not yet opened (use ``with`` or ``open()``).

    ``picamera2`` → :class:`Picamera2Source`; ``"0"`` or ``/dev/video0`` → :class:`OpenCVDeviceSource`;
    ``rtsp://``, ``rtsps://``, ``http://``, ``https://`` → :class:`StreamSource`; an existing directory →
    :class:`ImageFolderSource` at ``fps``; an existing file → :class:`VideoFileSource` (``fps`` only where the file
    does not state its rate). Cameras are asked for ``width`` x ``height``; file and folder frames keep their own
    size. ``opts`` go to the class's constructor (``loop``, ``realtime``, ``start_at``, ``backoff_max_s``, …).
    Anything else raises :class:`SourceError` naming the source and listing the accepted forms.
    """
    text = spec.strip()
    if not text:
        raise SourceError(f"camera.source is empty; accepted forms: {ACCEPTED_FORMS}", spec)
    if text.lower() == "picamera2":
        return Picamera2Source(width, height, fps, **opts)
    if text.isdigit():
        return OpenCVDeviceSource(int(text), width, height, fps, **opts)
    node = _DEVICE_NODE.match(text)
    if node is not None:
        return OpenCVDeviceSource(int(node.group(1)), width, height, fps, **opts)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme in STREAM_SCHEMES:
            return StreamSource(text, width, height, fps, **opts)
        raise SourceError(
            f"camera.source {redact_url(text)!r}: unsupported URL scheme {scheme!r}; accepted forms: {ACCEPTED_FORMS}",
            redact_url(text),
        )
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageFolderSource(path, fps, **opts)
    if path.is_file():
        return VideoFileSource(path, fps=fps, **opts)
    raise SourceError(
        f"camera.source {text!r}: no such file or folder ({path.resolve()}), and not a camera; "
        f"accepted forms: {ACCEPTED_FORMS}",
        text,
    )
