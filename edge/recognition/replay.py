"""Replay a source through the pipeline: events as they happen, and optionally an annotated video to look at."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from edge.recognition.pipeline import FaceEvent, Pipeline

log = logging.getLogger("rollcall.replay")


class TimedFrame(Protocol):
    """One picture with its time, as a frame source (``edge.door.sources.Frame``) hands it over."""

    @property
    def image(self) -> npt.NDArray[np.uint8]: ...

    @property
    def at(self) -> datetime: ...

    @property
    def pts_s(self) -> float: ...


class FrameFeed(Protocol):
    """What ``replay`` reads: a frame source (``edge.door.sources.FrameSource``); recognition needs no more of it."""

    @property
    def fps(self) -> float: ...

    def read(self) -> TimedFrame | None: ...

    def __enter__(self) -> Any: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None, /
    ) -> None: ...


GREEN, RED, AMBER, WHITE, BLACK = (60, 200, 60), (40, 40, 230), (0, 190, 255), (255, 255, 255), (0, 0, 0)


@dataclass
class Annotator:
    """Writes the frames with every track's box, name (or 'unknown' / '...') and score drawn on."""

    path: Path
    fps: float
    _writer: cv2.VideoWriter | None = None

    def write(self, image: npt.NDArray[np.uint8], pipeline: Pipeline) -> None:
        """Draw the pipeline's current tracks on a copy of ``image`` and append it to the video."""
        canvas = image.copy()
        for track in pipeline.tracks:
            x1, y1, x2, y2 = (int(v) for v in track.box)
            if not track.decided:
                colour, label = AMBER, f"#{track.id} ..."
            elif track.person_id is None:
                colour, label = RED, f"#{track.id} unknown"
            else:
                name = pipeline.gallery.names.get(track.person_id, track.person_id)
                colour, label = GREEN, f"#{track.id} {name} {track.score:.2f}"
            cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
            (text_w, text_h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
            top = max(0, y1 - text_h - 8)
            cv2.rectangle(canvas, (x1, top), (x1 + text_w + 6, top + text_h + 8), colour, -1)
            cv2.putText(canvas, label, (x1 + 3, top + text_h + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.6, BLACK, 1, cv2.LINE_AA)
        if self._writer is None:
            height, width = canvas.shape[:2]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (width, height))
            if not self._writer.isOpened():
                raise OSError(f"cannot write video {self.path}; check the folder and the .mp4 extension")
        self._writer.write(canvas)

    def close(self) -> None:
        """Finish the video file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def replay(source: FrameFeed, pipeline: Pipeline, annotate: Path | None = None) -> Iterator[FaceEvent]:
    """Run every frame of ``source`` through ``pipeline``, yielding events as they complete."""
    annotator = Annotator(annotate, source.fps or 10.0) if annotate is not None else None
    try:
        with source:
            while (frame := source.read()) is not None:
                yield from pipeline.process(frame.image, frame.at, frame.pts_s)
                if annotator is not None:
                    annotator.write(frame.image, pipeline)
        yield from pipeline.finish()
    finally:
        if annotator is not None:
            annotator.close()
