"""What the screens need from the app: the :class:`Console` protocol, and the :class:`Requester` it asks the hub with.

Views are typed against :class:`Console` (the live state, hub requests off the UI thread, notifications and dialogs,
the clock and the site's time zone), never against the concrete app, so no view imports :mod:`tui.app`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, time, tzinfo
from pathlib import Path
from typing import Any, Protocol, TypeVar

from PIL import Image as PILImage
from pydantic import JsonValue
from textual.notifications import SeverityLevel

from tui.live import LiveState

T = TypeVar("T")


class Requester(Protocol):
    """What the app needs from a hub client (an :class:`edge.protocol.hub_client.HubClient`)."""

    def call(self, method: str, params: dict[str, JsonValue] | None = None, timeout: float = 10.0) -> Any:
        """Send one request and return its result (raise HubUnavailable / HubRequestFailed)."""


class Console(Protocol):
    """The app as a screen sees it."""

    @property
    def live(self) -> LiveState:
        """The state pushed by the broker."""

    @property
    def requester(self) -> Requester:
        """The hub client, for jobs that ask several questions in a row (use inside :meth:`run_job` only)."""

    @property
    def zone(self) -> tzinfo:
        """The site's time zone (the hub's, once it said): every time on screen is local to it."""

    @property
    def day_starts_at(self) -> time:
        """Local time an attendance day begins (earlier times belong to the day before); the hub's, once it said."""

    @property
    def silent_after_min(self) -> float | None:
        """Minutes without a word after which the hub calls a device silent (None until the hub said)."""

    @property
    def request_timeout_s(self) -> float:
        """How long one request may take."""

    @property
    def export_dir(self) -> Path:
        """Where CSV exports go."""

    @property
    def issued_by(self) -> str:
        """Who the commands this console sends come from (``tui:<user>``)."""

    def clock(self) -> datetime:
        """Now (aware, UTC)."""

    def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        then: Callable[[Any], None] | None = None,
        timeout: float | None = None,
        quiet: bool = False,
    ) -> None:
        """Ask the hub ``method`` on a thread; ``then(result)`` runs on the UI thread when it answers."""

    def run_job(self, job: Callable[[], T], then: Callable[[T], None], *, quiet: bool = False) -> None:
        """Run ``job`` (which talks to the hub) on a thread; ``then(result)`` runs on the UI thread."""

    def notify(self, message: str, *, severity: SeverityLevel = "information", timeout: float | None = None) -> None:
        """Show a short notification."""

    def confirm(self, question: str, then: Callable[[], None]) -> None:
        """Ask a yes/no question; ``then()`` runs only on yes."""

    def ask(self, title: str, fields: Sequence[tuple[str, str, str]], then: Callable[[dict[str, str]], None]) -> None:
        """A small form of ``(key, label, value)`` fields; ``then(values by key)`` runs when it is submitted."""

    def show_image(self, title: str, image: PILImage.Image | None, caption: str = "") -> None:
        """One image, as large as the terminal allows."""

    def show_report(self, title: str, lines: Sequence[str]) -> None:
        """A text report the user closes."""
