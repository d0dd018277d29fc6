"""What the agent does on the desktop: notifications (or a small fallback window) and locking the screen.

Notifications go through ``notify-send`` (freedesktop notifications). Whether a notification daemon is there is
decided by trying: ``notify-send`` exits non-zero (no D-Bus session, no daemon) or hangs past a timeout, and then the
message is shown in a small ``xmessage`` window instead, titled ``rollcall``. Nothing is ever shown silently
nowhere: if neither works, the failure is logged.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger("rollcall.agent.commands")

NOTIFY_TIMEOUT_S = 5.0
TITLE = "rollcall"


@dataclass
class Desktop:
    """Shows messages to the person at the workstation and runs the configured lock/unlock commands."""

    lock_command: Sequence[str]
    unlock_command: Sequence[str]
    allow_lock: bool = True
    notify_send: str = "notify-send"
    xmessage: str = "xmessage"
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _timer: threading.Timer | None = None
    on_unlocked: Callable[[], None] | None = None
    """Called after the unlock command ran (from a timer or a command)."""
    shown: list[tuple[str, str]] = field(default_factory=list)
    """(how, text) of every message shown: ``notification``, ``window`` or ``none`` (for logs and tests)."""

    def _reap(self) -> None:
        with self._lock:
            self._children = [child for child in self._children if child.poll() is None]

    def notify(self, text: str, *, window_timeout_s: int | None = None) -> str:
        """Show ``text``: a desktop notification, else a small window; returns how (``notification``/``window``)."""
        self._reap()
        how = "none"
        if shutil.which(self.notify_send):
            try:
                result = subprocess.run(
                    [self.notify_send, "--app-name", TITLE, TITLE, text],
                    capture_output=True,
                    timeout=NOTIFY_TIMEOUT_S,
                    check=False,
                )
                if result.returncode == 0:
                    how = "notification"
                else:
                    log.debug("notify-send failed (%s): %s", result.returncode, result.stderr.decode(errors="replace"))
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.debug("notify-send did not answer: %s", exc)
        if how == "none" and shutil.which(self.xmessage) and os.environ.get("DISPLAY"):
            command = [self.xmessage, "-center", "-title", TITLE, "-name", TITLE]
            if window_timeout_s is not None:
                command += ["-timeout", str(window_timeout_s)]
            try:
                child = subprocess.Popen(
                    [*command, text], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                with self._lock:
                    self._children.append(child)
                how = "window"
            except OSError as exc:
                log.warning("could not open the message window: %s", exc)
        if how == "none":
            log.error("could not show a message (no notification daemon, no X display for a window): %r", text)
        else:
            log.info("shown as %s: %r", how, text)
        self.shown.append((how, text))
        return how

    def _run(self, command: Sequence[str], what: str) -> bool:
        try:
            result = subprocess.run(list(command), capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("%s command %s failed: %s", what, list(command), exc)
            return False
        if result.returncode != 0:
            log.error(
                "%s command %s exited %d: %s",
                what,
                list(command),
                result.returncode,
                result.stderr.decode(errors="replace").strip(),
            )
            return False
        log.info("%s command %s ran", what, list(command))
        return True

    def lock(self, unlock_after_s: int | None = None) -> bool:
        """Run the lock command (if allowed); with ``unlock_after_s``, run the unlock command after that long."""
        if not self.allow_lock:
            log.warning("lock asked, but commands.allow_lock is false: not locking")
            return False
        self.cancel_unlock()
        ok = self._run(self.lock_command, "lock")
        if ok and unlock_after_s is not None:
            if not self.unlock_command:
                log.warning("unlock after %d s asked, but commands.unlock_command is empty", unlock_after_s)
            else:
                timer = threading.Timer(unlock_after_s, self.unlock)
                timer.name = "agent-unlock"
                timer.daemon = True
                self._timer = timer
                timer.start()
        return ok

    def unlock(self) -> bool:
        """Run the unlock command (if one is configured)."""
        if not self.unlock_command:
            log.warning("unlock asked, but commands.unlock_command is empty")
            return False
        ok = self._run(self.unlock_command, "unlock")
        if ok and self.on_unlocked is not None:
            self.on_unlocked()
        return ok

    def cancel_unlock(self) -> None:
        """Forget a pending unlock timer."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        """Stop a pending unlock timer; message windows stay until the person closes them."""
        self.cancel_unlock()
        self._reap()
