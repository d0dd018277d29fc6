"""The supervisor's terminal UI: live state from the broker, questions to the hub, one key per screen.

:class:`RollcallApp` takes a :class:`tui.live.LiveState` (fed by the broker) and a :class:`tui.protocol.Requester`
with ``call(method, params, timeout)`` (a :class:`edge.protocol.hub_client.HubClient`); both are injected so tests
pass real ones. The app is the :class:`tui.protocol.Console` its views are given; its styles are in ``styles/``.
Requests run on background threads and their answers are applied on the UI thread by the redraw timer, which
runs at most ``max_redraw_hz`` times a second and redraws only what changed. The header shows the counts and
whether the broker is reachable and the hub answering; both recover by themselves.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, time, tzinfo
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from zoneinfo import ZoneInfo

from PIL import Image as PILImage
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import ContentSwitcher, Static

from edge.protocol import wire
from edge.protocol.hub_client import HubRequestFailed, HubUnavailable
from tui.live import LiveState
from tui.protocol import Requester
from tui.views import VIEWS, EventsView, View
from tui.widgets.footer import KeyFooter
from tui.widgets.modals import ConfirmScreen, FormScreen, HelpScreen, ImageScreen, ReportScreen
from tui.widgets.tables import age
from tui.widgets.textual_fixes import forget_styles_caches, share_ansi_codes

forget_styles_caches()
share_ansi_codes()

T = TypeVar("T")


class RollcallApp(App[None]):
    """rollcall's supervisor UI."""

    TITLE = "rollcall"
    CSS_PATH = ["styles/modals.tcss", "styles/app.tcss", "styles/views.tcss"]
    ENABLE_COMMAND_PALETTE = False  # every action has its own key, listed by `?`
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "show('presence')", "Presence"),
        Binding("a", "show('alerts')", "Alerts"),
        Binding("t", "show('attendance')", "Attendance"),
        Binding("u", "show('people')", "People"),
        Binding("d", "show('devices')", "Devices"),
        Binding("s", "show('screens')", "Screens"),
        Binding("e", "show('events')", "Events"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        live: LiveState,
        requester: Requester,
        *,
        site: str = "main",
        timezone: str | tzinfo = "UTC",
        clock: Callable[[], datetime] = wire.now_utc,
        max_redraw_hz: float = 10.0,
        request_timeout_s: float = 5.0,
        poll_s: float = 10.0,
        export_dir: Path | None = None,
        issued_by: str = "tui",
        events_shown: int = 200,
        day_starts_at: time = time(4, 0),
    ) -> None:
        super().__init__()
        self.live = live
        self.requester = requester
        self.site = site
        self.zone: tzinfo = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self.clock = clock
        self.max_redraw_hz = max_redraw_hz
        self.request_timeout_s = request_timeout_s
        self.poll_s = poll_s
        self.export_dir = export_dir or Path.cwd()
        self.issued_by = issued_by
        self.events_shown = events_shown
        self.day_starts_at = day_starts_at
        self.silent_after_min: float | None = None
        self.site_info_from_hub = False
        self.current = "presence"
        self.hub_failing = False
        self.hub_error: str | None = None
        self.last_reply_at: datetime | None = None
        self.requests_in_flight = 0
        self.requests_done = 0
        self.ticks = 0
        self._results: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = queue.SimpleQueue()
        self._was_connected = False
        self._loaded: set[str] = set()
        self._header = ""
        self._status = ""
        self.views: dict[str, View] = {}
        self.topbar = Static("", id="topbar", markup=False)
        self.statusbar = Static("", id="statusbar", markup=False)

    @property
    def settled(self) -> bool:
        """No request out and no answer waiting to be drawn (for tests and tools that wait for a still screen)."""
        return self.requests_in_flight == 0 and self._results.empty()

    # --- layout ------------------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield self.topbar
        yield self.statusbar
        with ContentSwitcher(initial="presence"):
            for view_class in VIEWS:
                view = EventsView(self, self.events_shown) if view_class is EventsView else view_class(self)
                assert view.id is not None
                self.views[view.id] = view
                yield view
        yield KeyFooter()

    def on_mount(self) -> None:
        self.set_interval(1.0 / self.max_redraw_hz, self.tick)
        self.set_interval(self.poll_s, self.poll)
        self.view().focus_main()
        self.tick()

    def view(self, name: str | None = None) -> View:
        """A view by id (the shown one by default); found also while a dialog is on top."""
        return self.views[name or self.current]

    # --- actions -----------------------------------------------------------------------------------------------

    def action_show(self, name: str) -> None:
        """Switch to a screen."""
        self.current = name
        self.query_one(ContentSwitcher).current = name
        view = self.view()
        view.redraw(force=True)
        view.focus_main()
        if self.live.connected or name not in self._loaded:
            view.load()
            self._loaded.add(name)
        self._draw_header()

    def action_help(self) -> None:
        """Every binding, per screen."""
        sections: list[tuple[str, list[tuple[str, str]]]] = [
            ("Everywhere", [(self._key_name(b), b.description) for b in self._bindings_of(self.BINDINGS)])
        ]
        for view in VIEWS:
            # A view's own keys and those of the view classes it builds on (the search of Searchable), base first.
            inherited = [c.__dict__.get("BINDINGS", []) for c in reversed(view.__mro__) if issubclass(c, View)]
            bindings = self._bindings_of([b for own in inherited for b in own])
            if bindings:
                sections.append((view.TITLE, [(self._key_name(b), b.description) for b in bindings]))
        dialogs = [("Enter", "next field / submit"), ("Esc", "cancel, close"), ("y / n", "yes / no")]
        sections.append(("Dialogs", dialogs))
        self.push_screen(HelpScreen(sections))

    @staticmethod
    def _bindings_of(bindings: list[BindingType]) -> list[Binding]:
        return [b for b in bindings if isinstance(b, Binding)]

    @staticmethod
    def _key_name(binding: Binding) -> str:
        names = {
            "question_mark": "?",
            "slash": "/",
            "left_square_bracket": "[",
            "right_square_bracket": "]",
            "delete": "Del",
            "enter": "Enter",
            "escape": "Esc",
            "left": "Left",
            "right": "Right",
            "up": "Up",
            "down": "Down",
        }
        return names.get(binding.key, binding.key)

    # --- dialogs ------------------------------------------------------------------------------------------------

    def confirm(self, question: str, then: Callable[[], None]) -> None:
        """Ask a yes/no question; ``then()`` runs only on yes."""

        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.push_screen(ConfirmScreen(question), answered)

    def ask(self, title: str, fields: Sequence[tuple[str, str, str]], then: Callable[[dict[str, str]], None]) -> None:
        """A small form of ``(key, label, value)`` fields; ``then(values by key)`` runs when it is submitted."""

        def submitted(values: dict[str, str] | None) -> None:
            if values:
                then(values)

        self.push_screen(FormScreen(title, fields), submitted)

    def show_image(self, title: str, image: PILImage.Image | None, caption: str = "") -> None:
        """One image, as large as the terminal allows."""
        self.push_screen(ImageScreen(title, image, caption))

    def show_report(self, title: str, lines: Sequence[str]) -> None:
        """A text report the user closes."""
        self.push_screen(ReportScreen(title, lines))

    # --- requests (never on the UI thread) ---------------------------------------------------------------------

    def run_job(self, job: Callable[[], T], then: Callable[[T], None], *, quiet: bool = False) -> None:
        """Run ``job`` (which talks to the hub) on a thread; ``then(result)`` runs on the UI thread."""
        self.requests_in_flight += 1

        def worker() -> None:
            try:
                result = job()
            except HubRequestFailed as exc:
                self._results.put((self._refused, (exc, quiet)))
            except HubUnavailable as exc:
                self._results.put((self._unanswered, (str(exc),)))
            except Exception as exc:
                self._results.put((self._refused, (exc, quiet)))
            else:
                self._results.put((self._answered, (then, result)))

        threading.Thread(target=worker, name="tui-request", daemon=True).start()

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
        requester = self.requester
        limit = timeout or self.request_timeout_s
        self.run_job(lambda: requester.call(method, params or {}, limit), then or (lambda _: None), quiet=quiet)

    def _answered(self, then: Callable[[Any], None], result: Any) -> None:
        self.requests_in_flight -= 1
        self.requests_done += 1
        self.hub_failing = False
        self.hub_error = None
        self.last_reply_at = self.clock()
        then(result)

    def _refused(self, exc: Exception, quiet: bool) -> None:
        self.requests_in_flight -= 1
        self.requests_done += 1
        if isinstance(exc, HubRequestFailed):
            self.hub_failing = False
            self.last_reply_at = self.clock()
        if isinstance(exc, HubRequestFailed) and exc.code == "forbidden":
            # Shown even for quiet requests: the supervisor should know their role does not cover it.
            self.notify(f"Not allowed: {exc.message}", title="Your role", severity="error", timeout=8)
        elif not quiet:
            self.notify(f"The hub refused: {exc}", severity="error", timeout=6)

    def _unanswered(self, message: str) -> None:
        self.requests_in_flight -= 1
        self.requests_done += 1
        self.hub_failing = True
        self.hub_error = message

    # --- the clock ---------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Apply request results, notice reconnects, redraw what changed (runs ``max_redraw_hz`` per second)."""
        self.ticks += 1
        while True:
            try:
                callback, args = self._results.get_nowait()
            except queue.Empty:
                break
            try:
                callback(*args)
            except Exception as exc:  # a view's callback must never take the UI down
                self.log.error(f"request callback failed: {exc!r}")
        connected = self.live.connected
        if connected and not self._was_connected:
            self.refresh_all()
        self._was_connected = connected
        try:
            self.view().redraw()
        except Exception as exc:  # drawing must never take the UI down; the next change draws again
            self.log.error(f"redraw of {self.current} failed: {exc!r}")
        self._draw_header()

    def refresh_all(self) -> None:
        """After (re)connecting: ask the hub for everything the live stream may have missed."""
        self.request("site.info", then=self._site_info, quiet=True)
        for name in ("presence", "alerts", "devices"):
            self.views[name].load()
        if self.current not in ("presence", "alerts", "devices"):
            self.view().load()
        self._loaded.add(self.current)

    def _site_info(self, result: Any) -> None:
        """The hub's time zone, attendance day start and silence limit replace the local fallbacks."""
        if not isinstance(result, dict):
            return
        try:
            zone = ZoneInfo(str(result["timezone"]))
            day_start = time.fromisoformat(str(result["day_starts_at"]))
        except (KeyError, ValueError) as exc:  # an older hub: keep the config's values
            self.log.warning(f"site.info not usable ({exc!r}); keeping the local time zone and day start")
            return
        silent = result.get("device_silent_after_min")
        self.zone, self.day_starts_at = zone, day_start
        self.silent_after_min = float(silent) if isinstance(silent, (int, float)) else None
        self.site_info_from_hub = True
        for view in self.views.values():
            view.site_known()
        self.view().redraw(force=True)

    def poll(self) -> None:
        """Every ``poll_s``: a cheap question keeps the hub's state fresh and notices when it answers again."""
        if not self.live.connected:
            return
        if self.requests_in_flight > 4:
            return  # the hub is slow or gone; do not pile up questions
        self.views["alerts"].load()
        if self.hub_failing or self.live.presence_refused:
            self.views["presence"].load()
            if self.current != "alerts":
                self.view().load()

    # --- header ------------------------------------------------------------------------------------------------

    def status_text(self) -> str:
        """'ok', 'broker unreachable' or 'hub not answering (...)'."""
        if not self.live.connected:
            return "broker unreachable (retrying)"
        hub = self.live.hub_status()
        if self.hub_failing or (hub is not None and hub.state != "online" and self.last_reply_at is None):
            if self.last_reply_at is None:
                return "hub not answering (no reply yet)"
            seconds = (self.clock() - self.last_reply_at).total_seconds()
            return f"hub not answering (last reply {age(seconds)} ago)"
        if hub is not None and hub.state != "online":
            return f"hub {hub.state.upper()} (it said so on the broker)"
        return "ok"

    def _draw_header(self) -> None:
        inside, outside, open_alerts = self.live.counts()
        view = self.view()
        header = (
            f" rollcall {self.site} | {view.TITLE} | IN {inside}  OUT {outside}  OPEN ALERTS {open_alerts} | ? help"
        )
        if header != self._header:
            self._header = header
            self.topbar.update(header)
        status = self.status_text()
        if status != self._status:
            self._status = status
            bar = self.statusbar
            bar.update(f" status: {status}")
            bar.set_class(status != "ok", "problem")
