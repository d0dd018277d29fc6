"""The images in one folder, in natural name order, as a replayed door."""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from edge.door.sources.base import Clock, Image, Monotonic, ReplaySource, Sleep, SourceError, as_bgr, sane_fps, utc_now

log = logging.getLogger("rollcall.sources")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _natural_key(path: Path) -> tuple[tuple[int, int | str], ...]:
    """Sorts ``img2`` before ``img10``."""
    parts = re.split(r"(\d+)", path.name.lower())
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts if part)


class ImageFolderSource(ReplaySource):
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
        if not sane_fps(fps):
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
        return as_bgr(image, f"{self.describe()} ({path.name})")

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
