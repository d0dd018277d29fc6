"""A fix for Textual (8.2) that keeps the styles caches of removed widgets alive.

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


@lru_cache(1024)
def _inner_outer(base_background: Color, background: Color) -> tuple[Style, Style]:
    """Inner and outer background styles, as ``StylesCache.get_inner_outer`` computes them."""
    return (Style(background=base_background + background), Style(background=base_background))


def _get_inner_outer(_cache: Any, base_background: Color, background: Color) -> tuple[Style, Style]:
    return _inner_outer(base_background, background)


def forget_styles_caches() -> None:
    """Key Textual's inner/outer background cache by the colours only (idempotent)."""
    StylesCache.get_inner_outer = _get_inner_outer  # type: ignore[method-assign,assignment]
