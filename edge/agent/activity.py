"""Input idle time, the active window (X11), and merging samples into activity intervals.

:class:`IntervalMerger` is pure: it turns (state, time) samples into merged ``active``/``idle``/``locked`` intervals.
:class:`XActivity` reads the X server: idle time from the MIT-SCREEN-SAVER extension, the active window from the
window manager's ``_NET_ACTIVE_WINDOW`` (or, without a window manager, the window holding the input focus).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from edge.agent.screen import x_display_problem
from edge.protocol import wire

log = logging.getLogger("rollcall.agent.activity")

State = Literal["active", "idle", "locked"]


class Unavailable(RuntimeError):
    """A kind of activity cannot be read here; the message says why (Wayland, a missing X extension)."""


def decide_state(
    *,
    locked: bool,
    input_idle_s: float | None,
    static_s: float | None,
    idle_after_s: float,
) -> State | None:
    """The input state from what could be measured; None when nothing could (no X at all).

    Input idle time decides when it is known: no keyboard or mouse input for ``idle_after_s`` = idle. Where input
    idle time is unavailable, a screen that has not changed for ``idle_after_s`` counts as idle instead (a static
    screen with no input is the only sign left). A lock the agent applied wins over both.
    """
    if locked:
        return "locked"
    if input_idle_s is not None:
        return "idle" if input_idle_s >= idle_after_s else "active"
    if static_s is not None:
        return "idle" if static_s >= idle_after_s else "active"
    return None


@dataclass
class _Open:
    state: State
    start: datetime
    end: datetime


class IntervalMerger:
    """Merges state samples into intervals: one interval per stretch of the same state.

    ``add(state, at, since)``: the state observed at ``at``; ``since`` (optional) is when that state began if known
    earlier than ``at`` (idle began when input stopped, ``at - idle_s``), so the previous interval is cut there.
    A gap of more than ``max_gap_s`` between samples (suspend, a stopped agent) closes the open interval at its last
    sample: nothing is claimed about time the agent did not see. :meth:`take` returns the closed intervals plus the
    open one up to ``at`` and keeps the open one going from ``at``.
    """

    def __init__(self, max_gap_s: float = 30.0) -> None:
        self.max_gap = timedelta(seconds=max_gap_s)
        self._closed: list[_Open] = []
        self._open: _Open | None = None

    def add(self, state: State, at: datetime, since: datetime | None = None) -> None:
        """Record one sample (samples must come in time order)."""
        current = self._open
        if current is not None and at < current.end:
            return  # out of order (clock stepped back): ignore rather than build a negative interval
        if current is not None and at - current.end > self.max_gap:
            self._closed.append(current)
            current = self._open = None
        if current is None:
            self._open = _Open(state, at, at)
            return
        if state == current.state:
            current.end = at
            return
        cut = at
        if since is not None and current.start < since < at:
            cut = max(since, current.start)
        current.end = cut
        if current.end > current.start:
            self._closed.append(current)
        self._open = _Open(state, cut, at)

    @property
    def state(self) -> State | None:
        """The state of the open interval."""
        return self._open.state if self._open is not None else None

    def take(self, at: datetime) -> list[wire.ActivityInterval]:
        """All intervals up to ``at``; the open interval goes on from ``at``."""
        out = [wire.ActivityInterval(state=i.state, start=i.start, end=i.end) for i in self._closed]
        self._closed = []
        current = self._open
        if current is not None:
            end = max(current.end, min(at, current.end + self.max_gap))
            if end > current.start:
                out.append(wire.ActivityInterval(state=current.state, start=current.start, end=end))
            self._open = _Open(current.state, end, end)
        return out


class XActivity:
    """Reads input idle time and the active window from the X server. Use from one thread only."""

    def __init__(self, display: str | None = None) -> None:
        problem = x_display_problem() if display is None else None
        if problem is not None:
            raise Unavailable(problem)
        from Xlib import display as xdisplay  # type: ignore[import-untyped]
        from Xlib import error as xerror

        self._errors: tuple[type[BaseException], ...] = (xerror.XError, xerror.ConnectionClosedError)
        try:
            self._display: Any = xdisplay.Display(display)
        except Exception as exc:  # Xlib raises DisplayError subclasses and OSError
            raise Unavailable(f"cannot open the X display: {exc}") from exc
        self._root = self._display.screen().root
        self.idle_problem: str | None = None
        if not self._display.has_extension("MIT-SCREEN-SAVER"):
            self.idle_problem = (
                "the X server has no MIT-SCREEN-SAVER extension: input idle time is unavailable; "
                "a static screen counts as idle instead"
            )
        self._net_active = self._display.intern_atom("_NET_ACTIVE_WINDOW")
        self._net_wm_name = self._display.intern_atom("_NET_WM_NAME")
        self._utf8 = self._display.intern_atom("UTF8_STRING")

    def idle_seconds(self) -> float | None:
        """Seconds since the last keyboard or mouse input; None when the extension is missing."""
        if self.idle_problem is not None:
            return None
        try:
            info = self._root.screensaver_query_info()
        except self._errors as exc:
            log.warning("idle time query failed: %s", exc)
            return None
        return float(info.idle) / 1000.0

    def _active_window(self) -> Any | None:
        try:
            prop = self._root.get_full_property(self._net_active, 0)
        except self._errors:
            prop = None
        if prop is not None and len(prop.value) and int(prop.value[0]):
            return self._display.create_resource_object("window", int(prop.value[0]))
        # No window manager (or one without EWMH): the window that holds the keyboard focus.
        focus = self._display.get_input_focus().focus
        if isinstance(focus, int) or focus is None:
            return None  # PointerRoot or None: nothing focused
        return focus

    def _title(self, window: Any) -> str | None:
        prop = window.get_full_property(self._net_wm_name, self._utf8)
        if prop is not None and prop.value:
            value = prop.value
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        name = window.get_wm_name()
        if name:
            return name.decode("latin-1") if isinstance(name, bytes) else str(name)
        return None

    def active_window(self) -> wire.WindowInfo:
        """Title and application (WM_CLASS) of the active window; both None when no window is active."""
        try:
            window = self._active_window()
            # The focus may sit on a child of the application's top-level window: walk up to a named one.
            for _ in range(8):
                if window is None or window.id == self._root.id:
                    break
                title = self._title(window)
                if title is not None:
                    wm_class = window.get_wm_class()
                    app = (wm_class[1] or wm_class[0]) if wm_class else None
                    return wire.WindowInfo(title=title[:1024], app=app[:256] if app else None)
                window = window.query_tree().parent
        except self._errors as exc:
            log.debug("active window query failed (window gone?): %s", exc)
        return wire.WindowInfo(title=None, app=None)

    def close(self) -> None:
        """Release the X connection."""
        with contextlib.suppress(*self._errors):
            self._display.close()
