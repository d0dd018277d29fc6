"""Screen capture (mss), change detection on small grey copies, and thumbnail/screenshot encoding (Pillow).

The pure parts (:func:`small_grey`, :func:`changed_fraction`, :func:`encode_image`, :func:`encode_screenshot`)
need no X server; :class:`ScreenCapture` grabs the whole X display.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from PIL import Image, ImageChops

from edge.protocol import wire

GREY_WIDTH = 160
"""Width of the grey copy that change detection compares (the height keeps the screen's aspect ratio)."""

PIXEL_THRESHOLD = 24
"""A grey pixel counts as changed when it differs by more than this (of 255): JPEG noise and cursor blink stay under."""

SCREENSHOT_QUALITIES = (85, 70, 55, 40)
"""JPEG qualities tried, best first, before a full screenshot is scaled down to fit the payload cap."""

_ENVELOPE_BYTES = 1024
"""Room left in a payload for the JSON fields around the base64 image."""

ImageFormat = Literal["jpeg", "webp"]


class CaptureUnavailable(RuntimeError):
    """The screen cannot be captured here (no X display, e.g. a pure Wayland session); the message says why."""


def x_display_problem(environ: dict[str, str] | None = None) -> str | None:
    """Why X11 is not usable in this environment, or None when ``DISPLAY`` is set."""
    env = dict(os.environ) if environ is None else environ
    if env.get("DISPLAY"):
        return None
    if env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE") == "wayland":
        return (
            "this is a Wayland session without X11 (DISPLAY is not set): screen thumbnails, input idle time and "
            "the active window are not available to the agent; Wayland does not let ordinary programs read them"
        )
    return "no X display (DISPLAY is not set): run the agent inside the desktop session (systemd --user)"


def small_grey(image: Image.Image, width: int = GREY_WIDTH) -> Image.Image:
    """A small grey copy of a screen image for change detection."""
    height = max(1, round(image.height * width / max(1, image.width)))
    return image.convert("L").resize((width, height), Image.Resampling.BOX)


def changed_fraction(previous: Image.Image | None, current: Image.Image, threshold: int = PIXEL_THRESHOLD) -> float:
    """Share of pixels (0..1) that differ by more than ``threshold`` between two small grey images.

    No previous image, or one of another size (the screen resolution changed), counts as entirely changed.
    """
    if previous is None or previous.size != current.size:
        return 1.0
    histogram = ImageChops.difference(previous, current).histogram()
    changed = sum(histogram[threshold + 1 :])
    total = current.width * current.height
    return min(1.0, changed / total) if total else 0.0


def encode_image(image: Image.Image, fmt: ImageFormat, quality: int = 70) -> bytes:
    """JPEG or WebP bytes of an RGB image."""
    out = io.BytesIO()
    if fmt == "webp":
        image.save(out, format="WEBP", quality=quality, method=4)
    else:
        image.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def content_type(fmt: ImageFormat) -> Literal["image/jpeg", "image/webp"]:
    """The MIME type of an image format."""
    return "image/webp" if fmt == "webp" else "image/jpeg"


def resize_to_width(image: Image.Image, width: int) -> Image.Image:
    """Scale down (never up) to ``width``, keeping the aspect ratio."""
    if image.width <= width:
        return image
    height = max(1, round(image.height * width / image.width))
    return image.resize((width, height), Image.Resampling.LANCZOS)


def thumbnail(
    agent: str, image: Image.Image, at: datetime, fraction: float, width: int, fmt: ImageFormat, quality: int = 70
) -> wire.Screen:
    """The retained thumbnail payload of a screen image."""
    small = resize_to_width(image, width)
    return wire.Screen(
        agent=agent,
        at=at,
        content_type=content_type(fmt),
        width=small.width,
        height=small.height,
        changed_fraction=max(0.0, min(1.0, fraction)),
        full=False,
        data=encode_image(small, fmt, quality),
    )


def max_image_bytes(limit: int = wire.MAX_BINARY_PAYLOAD_BYTES) -> int:
    """The largest image that still fits a payload of ``limit`` bytes once base64-encoded inside JSON."""
    return (limit - _ENVELOPE_BYTES) * 3 // 4


def encode_screenshot(
    agent: str, image: Image.Image, at: datetime, fraction: float, limit: int = wire.MAX_BINARY_PAYLOAD_BYTES
) -> wire.Screen:
    """A full-size JPEG screenshot payload that fits ``limit``: lower quality first, then smaller, until it does."""
    budget = max_image_bytes(limit)
    current = image
    while True:
        for quality in SCREENSHOT_QUALITIES:
            data = encode_image(current, "jpeg", quality)
            if len(data) <= budget:
                return wire.Screen(
                    agent=agent,
                    at=at,
                    content_type="image/jpeg",
                    width=current.width,
                    height=current.height,
                    changed_fraction=max(0.0, min(1.0, fraction)),
                    full=True,
                    data=data,
                )
        if current.width <= 64:
            raise ValueError(f"cannot fit a screenshot into {limit} bytes")
        current = resize_to_width(current, max(64, int(current.width * 0.75)))


@dataclass
class ScreenCapture:
    """Grabs the whole X display (all monitors) with mss. Use it from one thread only (mss is not thread-safe)."""

    display: str | None = None

    def __post_init__(self) -> None:
        problem = x_display_problem() if self.display is None else None
        if problem is not None:
            raise CaptureUnavailable(problem)
        import mss

        try:
            factory = getattr(mss, "MSS", None) or mss.mss  # mss 10 renamed the factory; 9 has only mss.mss
            self._mss = factory(display=self.display) if self.display else factory()
        except Exception as exc:  # mss raises its own ScreenShotError and XCB errors
            raise CaptureUnavailable(f"cannot open the X display for screen capture: {exc}") from exc

    def grab(self) -> Image.Image:
        """The whole screen as an RGB image."""
        shot = self._mss.grab(self._mss.monitors[0])
        return Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")

    def close(self) -> None:
        """Release the X connection."""
        self._mss.close()
