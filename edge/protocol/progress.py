"""One text progress bar for long operations, counting items or bytes (stderr; redrawn in place on a terminal)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Literal, TextIO

Unit = Literal["items", "bytes"]


def human_bytes(count: float | None) -> str:
    """``2524817`` → ``2.5 MB`` (decimal units, as download pages write them)."""
    if count is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


class Progress:
    """A progress bar: ``label``, bar, and the count done; silent when ``enabled`` is False.

    Items: ``with Progress("embedding photos", total) as bar: bar.advance()``. Bytes (``unit="bytes"``): the
    instance is the download callback ``bar(name, bytes_done, bytes_total_or_None)``, which adds percent and rate
    and starts afresh whenever ``name`` changes. On a terminal the line is redrawn in place at most every
    ``interval_s``; elsewhere (logs, CI) a new line is written only at every tenth (items) or quarter (bytes).
    """

    def __init__(
        self,
        label: str = "",
        total: int | None = None,
        *,
        unit: Unit = "items",
        stream: TextIO | None = None,
        enabled: bool = True,
        width: int | None = None,
        interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
    ) -> None:
        self.label = label
        self.unit = unit
        self.total = max(0, total or 0) if unit == "items" else total
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.width = width if width is not None else (30 if unit == "items" else 24)
        self.interval_s = interval_s
        self.clock = clock
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        # Sparse lines off a terminal: one per tenth of the items, one per quarter of the bytes.
        self._lines_per_total = 10 if unit == "items" else 4
        self._started = False
        self._start = 0.0
        self._start_done = 0
        self._last_draw = float("-inf")
        self._last_percent = -1
        self._last_step = -1
        self._shown = 0

    # --- counted items ---------------------------------------------------------------------------------------------

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._draw(force=True, end_line=True)

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more items done."""
        self.done += steps
        self._draw()

    # --- downloaded bytes ------------------------------------------------------------------------------------------

    def __call__(self, name: str, done: int, total: int | None) -> None:
        """The download progress callback: ``done`` of ``total`` bytes (None: unknown) of the file ``name``."""
        now = self.clock()
        if not self._started or name != self.label:
            self._started = True
            self.label, self._start, self._start_done = name, now, done
            self._last_draw, self._last_percent, self._last_step, self._shown = float("-inf"), -1, -1, 0
        self.done, self.total = done, total
        finished = total is not None and done >= total
        self._draw(force=finished, end_line=finished, now=now)

    # --- drawing ---------------------------------------------------------------------------------------------------

    def _percent(self) -> int | None:
        if self.total:
            return 100 * self.done // self.total
        return 100 if self.unit == "items" else None  # no items to do is all done; unknown bytes are unknown

    def render(self, now: float | None = None) -> str:
        """The bar's text for the current state (``now`` gives the byte rate)."""
        percent = self._percent()
        if self.unit == "items":
            filled = (percent or 0) * self.width // 100
            return f"{self.label}: [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}"
        elapsed = (now if now is not None else self.clock()) - self._start
        rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
        speed = f"{human_bytes(rate)}/s"
        if not self.total:
            return f"{self.label}  {human_bytes(self.done)}  {speed}"
        fraction = min(1.0, self.done / self.total)
        filled = int(fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        amount = f"{human_bytes(self.done)} / {human_bytes(self.total)}"
        return f"{self.label}  [{bar}] {fraction * 100:3.0f}%  {amount}  {speed}"

    def _draw(self, force: bool = False, end_line: bool = False, now: float | None = None) -> None:
        if not self.enabled:
            return
        now = self.clock() if now is None else now
        percent = self._percent()
        if self.tty:
            if not force and now - self._last_draw < self.interval_s:
                return
            line = self.render(now)
            self.stream.write("\r" + line.ljust(self._shown) + ("\n" if end_line else ""))
            self._shown = len(line)
        else:
            step = -1 if percent is None else percent * self._lines_per_total // 100
            # Never the same line twice: a forced draw (start, end) repeats nothing already written.
            if step <= self._last_step and (not force or percent == self._last_percent):
                return
            self._last_step = step
            if self.unit == "items":
                self.stream.write(f"{self.label}: {self.done}/{self.total} ({percent}%)\n")
            else:
                self.stream.write(self.render(now) + "\n")
        self._last_percent = -1 if percent is None else percent
        self._last_draw = now
        self.stream.flush()
