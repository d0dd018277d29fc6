"""Pictures in the terminal: textual-image (Kitty / Sixel where the terminal supports them, half blocks otherwise).

textual-image asks the terminal about its cell size when it is imported; a terminal that cannot answer (no size,
say) makes that import fail. The TUI then draws a short text placeholder instead of pictures and works otherwise.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from PIL import Image as PILImage
from textual.widgets import Static

IMAGES_AVAILABLE = True
_probe_log = logging.getLogger("textual_image")
_level = _probe_log.level
_probe_log.setLevel(logging.ERROR)  # a terminal that does not answer its probe is normal (it gets half blocks)
try:
    from textual_image.widget import Image as _TerminalImage
except Exception:  # pragma: no cover - depends on the terminal
    IMAGES_AVAILABLE = False
finally:
    _probe_log.setLevel(_level)


def decode_image(data: bytes) -> PILImage.Image | None:
    """Bytes of a JPEG/PNG/WebP as a PIL image, or None when they are not a readable picture."""
    try:
        image = PILImage.open(io.BytesIO(data))
        image.load()
    except Exception:
        return None
    return image


class TextPicture(Static):
    """Stands in for a picture where the terminal cannot draw one."""

    def __init__(self, image: PILImage.Image | None = None, *, id: str | None = None, classes: str | None = None):
        super().__init__("", id=id, classes=classes, markup=False)
        self._picture: PILImage.Image | None = None
        self.image = image

    @property
    def image(self) -> PILImage.Image | None:
        """The picture (shown as its size only)."""
        return self._picture

    @image.setter
    def image(self, value: PILImage.Image | None) -> None:
        self._picture = value
        self.update("" if value is None else f"[picture {value.width}x{value.height}]")


Picture: Any = _TerminalImage if IMAGES_AVAILABLE else TextPicture
"""The widget class that shows a PIL image: ``Picture(image, id=..., classes=...)``, ``.image = ...``."""
