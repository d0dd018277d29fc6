"""A small text progress bar for long operations (stderr; redraws in place on a terminal, sparse lines otherwise)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress("embedding photos", total) as bar: bar.advance()``; silent when ``enabled`` is False."""

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.label = label
        self.total = max(0, total)
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_draw = 0.0
        self._last_percent = -1

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._draw(force=True)
        if self.enabled and self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more items done."""
        self.done += steps
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        percent = 100 * self.done // self.total if self.total else 100
        now = time.monotonic()
        if self._tty:
            if not force and now - self._last_draw < 0.1:
                return
            filled = percent * 30 // 100
            self.stream.write(f"\r{self.label}: [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}")
        else:
            # Logs and CI: one line per 10 %, not one per item, and never the same line twice.
            if percent // 10 == self._last_percent // 10 and (not force or percent == self._last_percent):
                return
            self.stream.write(f"{self.label}: {self.done}/{self.total} ({percent}%)\n")
        self._last_percent = percent
        self._last_draw = now
        self.stream.flush()
