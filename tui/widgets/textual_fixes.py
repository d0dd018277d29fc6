"""Fixes for Textual (8.2) caches that keep memory alive: styles caches, a live table's renders, per-cell ANSI codes.

``StylesCache.get_inner_outer`` is a method under ``functools.lru_cache(1024)``, so the cache's key holds the
widget's ``StylesCache`` itself, with every line it rendered. Each widget ever created (the footer's keys on every
switch of screen, toasts, cards) stayed in memory that way until 1,024 of them were kept: megabytes, growing for
about an hour of use. The answer depends only on the two colours, so the cache is keyed by those alone.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from rich.color import Color as RichColor
from rich.color import ColorSystem
from rich.style import Style as RichStyle
from textual._styles_cache import StylesCache
from textual.color import Color
from textual.strip import SGR_STYLES, Strip
from textual.style import Style
from textual.widgets import DataTable


@lru_cache(1024)
def _inner_outer(base_background: Color, background: Color) -> tuple[Style, Style]:
    """Inner and outer background styles, as ``StylesCache.get_inner_outer`` computes them."""
    return (Style(background=base_background + background), Style(background=base_background))


def _get_inner_outer(_cache: Any, base_background: Color, background: Color) -> tuple[Style, Style]:
    return _inner_outer(base_background, background)


def forget_styles_caches() -> None:
    """Key Textual's inner/outer background cache by the colours only (idempotent)."""
    StylesCache.get_inner_outer = _get_inner_outer  # type: ignore[method-assign,assignment]


TEXTUAL_RENDER_ANSI: Any = Strip.__dict__["render_ansi"]
"""Textual's own ``Strip.render_ansi`` (a classmethod over an lru_cache), kept to check the replacement against."""


@lru_cache(4096)
def _sgr(color: RichColor | None, bgcolor: RichColor | None, attributes: int, color_system: ColorSystem) -> str:
    """The SGR parameters for one set of attributes and colours, as ``Strip.render_ansi`` writes them."""
    sgr = [SGR_STYLES[bit] for bit in range(attributes.bit_length()) if attributes & (1 << bit)]
    if color is not None:
        sgr.extend(color.downgrade(color_system).get_ansi_codes())
    if bgcolor is not None:
        sgr.extend(bgcolor.downgrade(color_system).get_ansi_codes(False))
    return ";".join(sgr)


def _render_ansi(_cls: Any, style: RichStyle, color_system: ColorSystem) -> str:
    ansi = style._ansi = _sgr(style._color, style._bgcolor, style._attributes & style._set_attributes, color_system)
    return ansi


def share_ansi_codes() -> None:
    """Key Textual's ANSI-code cache (``Strip.render_ansi``) by colours and attributes alone (idempotent).

    Textual caches the codes in an ``lru_cache(16384)`` keyed by the whole Rich style, and a style's identity includes
    its ``meta``: Textual puts the row and column into every DataTable cell's style, and the widget and offset into
    others. So every cell of every table, screen after screen, became its own entry holding its style alive (about
    seven Python objects each), for codes that depend only on the colours and attributes: the cache filled towards
    16,384 entries (about 10 MB) over hours of switching screens, with fewer hits than misses.
    """
    Strip.render_ansi = classmethod(_render_ansi)  # type: ignore[method-assign,assignment]


def forget_stale_renders(table: DataTable[Any]) -> None:
    """Drop the rendered cells, rows and lines of a DataTable whose data just changed.

    DataTable keys its render caches on an update counter that every ``update_cell`` and ``add_row`` bumps, so a
    change makes every cached render unreachable, yet they stay until the caches' LRU bounds (10,000 cells, 1,000
    rows and lines) push them out: about 14 MB for a 30-row table, filled over hours of live updates and then kept.
    ``clear()`` drops them the same way; this does it without clearing the data.
    """
    clear = getattr(table, "_clear_caches", None)
    if callable(clear):
        clear()
