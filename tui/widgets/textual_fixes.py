"""Fixes for Textual (8.2) caches that keep memory alive: removed widgets' styles caches, a live table's old renders.

``StylesCache.get_inner_outer`` is a method under ``functools.lru_cache(1024)``, so the cache's key holds the
widget's ``StylesCache`` itself, with every line it rendered. Each widget ever created (the footer's keys on every
switch of screen, toasts, cards) stayed in memory that way until 1,024 of them were kept: megabytes, growing for
about an hour of use. The answer depends only on the two colours, so the cache is keyed by those alone.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from textual._styles_cache import StylesCache
from textual.color import Color
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
