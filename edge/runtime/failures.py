"""A failure that repeats on every pass of a loop, logged once with its traceback, and its end logged too."""

from __future__ import annotations

import logging


class RepeatedFailure:
    """Logs the first failure of ``what`` (and each different one) with its traceback, not every repeat of it.

    A loop calls :meth:`failed` on every failed pass and :meth:`succeeded` on every good one; the log then says
    once that it failed and once that it works again, however many passes that took. :attr:`error` is the current
    failure for health (None while it works).
    """

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self.what = what
        self.failures = 0
        """Failed passes since the last good one."""
        self.error: str | None = None
        self._last: tuple[type[BaseException], str] | None = None

    def failed(self, exc: BaseException) -> None:
        """A pass failed with ``exc``: logged (with the traceback) unless it is the same failure as the last."""
        self.failures += 1
        self.error = f"{self.what} failed: {exc}"
        key = (type(exc), str(exc))
        if key != self._last:
            self._last = key
            self._log.error("%s failed (logged once while it repeats): %s", self.what, exc, exc_info=exc)

    def succeeded(self) -> None:
        """A pass worked: if it had been failing, say so once."""
        if self.failures:
            self._log.warning("%s works again after %d failed attempts", self.what, self.failures)
        self.failures = 0
        self.error = None
        self._last = None
