"""systemd readiness and watchdog notifications (sd_notify) over $NOTIFY_SOCKET, a no-op outside systemd.

The protocol is one datagram to a Unix socket; a dependency (python-systemd needs libsystemd headers to build) would
cost more than these lines.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class SystemdNotifier:
    """Sends READY=1, WATCHDOG=1, STATUS=... and STOPPING=1 to systemd when run as a Type=notify service."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading '@' and addressed with a leading NUL byte.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        watchdog_usec = environ.get("WATCHDOG_USEC", "")
        watchdog_pid = environ.get("WATCHDOG_PID", "")
        mine = not watchdog_pid or watchdog_pid == str(os.getpid())
        self.watchdog_interval_s: float | None = (
            int(watchdog_usec) / 1_000_000 / 2 if watchdog_usec.isdigit() and mine else None
        )
        """Half the watchdog timeout systemd set (ping at least this often), or None without a watchdog."""

    @property
    def enabled(self) -> bool:
        """Whether systemd is listening."""
        return bool(self._address)

    def notify(self, *states: str) -> bool:
        """Send ``KEY=value`` lines; False when not under systemd or the send failed (never raises)."""
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(states).encode(), self._address)
            return True
        except OSError:
            return False

    def ready(self, status: str) -> bool:
        """The service is up."""
        return self.notify("READY=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        """Still alive."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """A one-line status for `systemctl status`."""
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        """Shutting down cleanly."""
        return self.notify("STOPPING=1")
