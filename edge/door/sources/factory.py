"""``open_source``: the frame source that ``camera.source`` names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edge.door.sources.base import FrameSource, SourceError
from edge.door.sources.device import OpenCVDeviceSource
from edge.door.sources.image_folder import IMAGE_SUFFIXES, ImageFolderSource
from edge.door.sources.picamera import Picamera2Source
from edge.door.sources.stream import STREAM_SCHEMES, StreamSource, redact_url
from edge.door.sources.video_file import VideoFileSource

ACCEPTED_FORMS = (
    "'picamera2' (Raspberry Pi camera), a camera index such as '0' or '/dev/video0', "
    "an rtsp://, rtsps://, http:// or https:// URL, an existing video file, or an existing folder of images "
    f"({', '.join(IMAGE_SUFFIXES)})"
)

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
