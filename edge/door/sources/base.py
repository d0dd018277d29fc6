"""What every frame source shares: the Frame, SourceError, the FrameSource contract, live and replay timing."""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self

import cv2
import numpy as np
from numpy.typing import NDArray

from edge.protocol.times import require_aware

log = logging.getLogger("rollcall.sources")

Image = NDArray[np.uint8]
"""A BGR picture, ``uint8``, shape ``(height, width, 3)``."""

Clock = Callable[[], datetime]
"""Wall-clock time, UTC-aware (``datetime.now(UTC)`` unless a test injects another)."""

Monotonic = Callable[[], float]
Sleep = Callable[[float], None]


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


class CaptureBackend(Protocol):
    """The part of ``cv2.VideoCapture`` the sources use (tests inject fakes)."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, Any]: ...

    def set(self, prop_id: int, value: float, /) -> bool: ...

    def get(self, prop_id: int, /) -> float: ...

    def release(self) -> None: ...


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


def sane_fps(value: float) -> bool:
    """Whether a frame rate reported by a driver or container is usable (finite, above 0, at most 1000)."""
    return math.isfinite(value) and 0 < value <= 1000


def as_bgr(image: Any, source: str) -> Image:
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


def release(capture: CaptureBackend | None) -> None:
    """Releases an OpenCV capture, if there is one."""
    if capture is not None:
        capture.release()


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


class LiveSource(FrameSource):
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
            image=as_bgr(image, self.describe()),
            index=self._next_index,
            at=require_aware(self._clock(), "the source clock"),
            pts_s=max(0.0, self._monotonic() - self._started),
        )
        self._next_index += 1
        return frame


class ReplaySource(FrameSource):
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
        self._start_at_arg = None if start_at is None else require_aware(start_at, "start_at")
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
        self._start_at = self._start_at_arg or require_aware(self._clock(), "the source clock")
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
