"""The TUI's screens (views): presence, alerts, attendance, people, devices, workstation screens, events.

Each view redraws from :class:`tui.live.LiveState` only when the area it shows changed (the app's timer asks it
at most ``max_redraw_hz`` times a second), and updates its table in place through :class:`tui.tables.TableSync`.
Questions for the hub go through :meth:`tui.app.RollcallApp.request`, which runs them off the UI thread.
"""

from __future__ import annotations

import base64
import csv
import io
import shlex
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from PIL import Image as PILImage
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.events import Resize
from textual.widgets import DataTable, Input, Label, Static
from ulid import ULID

from edge.protocol import wire
from tui.images import Picture
from tui.live import AgentState
from tui.modals import ConfirmScreen, FormScreen, ImageScreen, ReportScreen
from tui.tables import TableSync, age, local_time, number, parse_time, sortable_time

if TYPE_CHECKING:
    from tui.app import RollcallApp

STATE_WORDS = {"in": "IN", "out": "OUT", "unknown": "UNKNOWN"}
ALERT_STATE_WORDS = {"open": "OPEN", "acknowledged": "ACK", "resolved": "RESOLVED"}
ALERT_STATE_ORDER = {"OPEN": 0, "ACK": 1, "RESOLVED": 2}
SEVERITY_WORDS = {"info": "INFO", "warning": "WARN", "critical": "CRIT"}
DEVICE_STATE_WORDS = {"online": "ONLINE", "offline": "OFFLINE", "stopped": "STOPPED", "unknown": "UNKNOWN"}


def decode_image(data: bytes) -> PILImage.Image | None:
    """Bytes of a JPEG/PNG/WebP as a PIL image, or None when they are not a readable picture."""
    try:
        image = PILImage.open(io.BytesIO(data))
        image.load()
    except Exception:
        return None
    return image


class View(Vertical):
    """A screen of the TUI; shown one at a time."""

    can_focus = True
    TITLE: ClassVar[str] = ""
    KEY: ClassVar[str] = ""

    @property
    def rc(self) -> RollcallApp:
        """The app, typed."""
        return cast("RollcallApp", self.app)

    def load(self) -> None:
        """Ask the hub for what this view needs (on show, after a reconnect, on a poll)."""

    def redraw(self, force: bool = False) -> None:
        """Bring the view up to date with the live state (cheap when nothing changed)."""

    def focus_main(self) -> None:
        """Put the keyboard focus where this view's keys work."""
        tables = list(self.query(DataTable))
        if tables:
            tables[0].focus()
        else:
            self.focus()


# --- presence ----------------------------------------------------------------------------------------------------


class PresenceView(View):
    """Everyone with in/out, since when and at which door; filter and search."""

    TITLE = "Presence"
    KEY = "p"
    FILTERS: ClassVar[tuple[str, ...]] = ("all", "in", "out", "unknown")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search"),
        Binding("f", "cycle_filter", "Filter in/out"),
        Binding("escape", "clear_search", "Clear search", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="presence")
        self.filter = "all"
        self.query_text = ""
        self._drawn: tuple[int, str, str, str] | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search name, id or door; Enter: back to the list, Esc: clear", id="presence-search")
        yield Label("", id="presence-filter")
        table: DataTable[str] = DataTable(id="presence-table", cursor_type="row", zebra_stripes=False)
        self.sync = TableSync(
            table,
            [("name", "Name"), ("id", "ID"), ("state", "State"), ("since", "Since"), ("door", "Door")],
            sort=[("name", str.casefold, False)],
        )
        yield table

    def on_mount(self) -> None:
        self.query_one("#presence-search", Input).display = False
        self.redraw(force=True)

    def load(self) -> None:
        live = self.rc.live
        if live.version("presence") == 0 or live.presence_refused:
            asked_at = live.version("presence")
            self.rc.request("presence.get", then=lambda result: self._board(result, asked_at))

    def _board(self, result: Any, asked_at: int) -> None:
        live = self.rc.live
        if live.version("presence") != asked_at and not live.presence_refused:
            return  # a newer board came from the broker meanwhile
        if isinstance(result, list):
            live.set_presence([r for r in result if isinstance(r, dict)], self.rc.clock())

    def redraw(self, force: bool = False) -> None:
        now = self.rc.clock()
        today = now.astimezone(self.rc.zone).date().isoformat()
        key = (self.rc.live.version("presence"), self.filter, self.query_text, today)
        if key == self._drawn and not force:
            return
        self._drawn = key
        needle = self.query_text.casefold()
        desired: dict[str, tuple[str, ...]] = {}
        board = self.rc.live.presence()
        for entry in board:
            if self.filter != "all" and entry.state != self.filter:
                continue
            if needle and needle not in f"{entry.name}\n{entry.person_id}\n{entry.door or ''}".casefold():
                continue
            desired[entry.person_id] = (
                entry.name,
                entry.person_id,
                STATE_WORDS[entry.state],
                local_time(entry.since, self.rc.zone, now),
                entry.door or "-",
            )
        self.sync.sync(desired)
        total = len(board)
        search = f"  search: {self.query_text!r}" if self.query_text else ""
        self.query_one("#presence-filter", Label).update(
            f"showing {len(desired)} of {total} (filter: {self.filter}){search}   / search  f filter"
        )

    def action_search(self) -> None:
        search = self.query_one("#presence-search", Input)
        search.display = True
        search.focus()

    def action_cycle_filter(self) -> None:
        self.filter = self.FILTERS[(self.FILTERS.index(self.filter) + 1) % len(self.FILTERS)]
        self.redraw()

    def action_clear_search(self) -> None:
        search = self.query_one("#presence-search", Input)
        search.value = ""
        self.query_text = ""
        search.display = False
        self.query_one("#presence-table", DataTable).focus()
        self.redraw()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "presence-search":
            self.query_text = event.value.strip()
            self.redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "presence-search":
            if not event.value.strip():
                event.input.display = False
            self.query_one("#presence-table", DataTable).focus()


# --- alerts ------------------------------------------------------------------------------------------------------


class AlertsView(View):
    """Alerts, open ones first; acknowledge, resolve, details with the snapshot."""

    TITLE = "Alerts"
    KEY = "a"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k", "acknowledge", "Acknowledge"),
        Binding("r", "resolve", "Resolve"),
        Binding("enter", "open_snapshot", "Snapshot large", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="alerts")
        self._drawn: int | None = None
        self._detail_for: str | None = None
        self.snapshot: PILImage.Image | None = None
        self.snapshot_event: str | None = None

    def compose(self) -> ComposeResult:
        table: DataTable[str] = DataTable(id="alerts-table", cursor_type="row")
        self.sync = TableSync(
            table,
            [
                ("state", "State"),
                ("severity", "Sev"),
                ("rule", "Rule"),
                ("subject", "Subject"),
                ("count", "N"),
                ("last", "Last seen"),
            ],
            sort=[("state", ALERT_STATE_ORDER.__getitem__, False), ("last", None, True)],
        )
        yield table
        with Horizontal(id="alert-details", classes="details"):
            yield Static("No alerts. New ones appear here as the hub raises them.", id="alert-text", markup=False)
            yield Picture(None, id="alert-snapshot", classes="photo")

    def load(self) -> None:
        self.rc.request("alerts.list", {"limit": 500}, then=self._listed)

    def _listed(self, result: Any) -> None:
        if isinstance(result, list):
            self.rc.live.merge_alerts([r for r in result if isinstance(r, dict)])

    def redraw(self, force: bool = False) -> None:
        version = self.rc.live.version("alerts")
        if version == self._drawn and not force:
            return
        self._drawn = version
        zone = self.rc.zone
        desired = {
            a.alert_id: (
                ALERT_STATE_WORDS[a.state],
                SEVERITY_WORDS[a.severity],
                a.rule,
                a.subject,
                str(a.count),
                sortable_time(a.last_at, zone),
            )
            for a in self.rc.live.alerts()
        }
        self.sync.sync(desired)
        self._show_details(force=True)

    def current(self) -> wire.Alert | None:
        """The alert under the cursor."""
        key = self.sync.cursor_key()
        return None if key is None else self.rc.live.alert(key)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_details()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_snapshot()

    def _show_details(self, force: bool = False) -> None:
        alert = self.current()
        text = self.query_one("#alert-text", Static)
        if alert is None:
            text.update("No alerts. New ones appear here as the hub raises them.")
            return
        if alert.alert_id == self._detail_for and not force:
            return
        zone = self.rc.zone
        lines = [
            f"{ALERT_STATE_WORDS[alert.state]} {SEVERITY_WORDS[alert.severity]} {alert.rule}: {alert.subject}",
            alert.message,
            f"first {sortable_time(alert.first_at, zone)}  last {sortable_time(alert.last_at, zone)}  "
            f"seen {alert.count}x",
        ]
        if alert.device:
            lines.append(f"device {alert.device}")
        if alert.person_id:
            lines.append(f"person {alert.person_id}")
        if alert.acknowledged_by:
            lines.append(f"acknowledged by {alert.acknowledged_by}")
        if self.snapshot_event and alert.alert_id == self._detail_for:
            lines.append(f"snapshot of event {self.snapshot_event} (Enter: large)")
        text.update("\n".join(lines))
        if alert.alert_id != self._detail_for:
            self._detail_for = alert.alert_id
            self.snapshot = None
            self.snapshot_event = None
            self.query_one("#alert-snapshot", Picture).image = None
            if alert.device:
                self._fetch_snapshot(alert)

    def _fetch_snapshot(self, alert: wire.Alert) -> None:
        """Find the alert's latest event with a snapshot (same door and person, not after it) and fetch it."""
        requester = self.rc.requester
        timeout = self.rc.request_timeout_s

        def job() -> tuple[str, str, bytes] | None:
            events = requester.call("events.recent", {"limit": 200}, timeout)
            if not isinstance(events, list):
                return None
            for row in events:  # newest first
                if not isinstance(row, dict) or not row.get("has_snapshot") or row.get("device") != alert.device:
                    continue
                if row.get("person_id") != alert.person_id and alert.rule != "unknown_face":
                    continue
                if alert.rule == "unknown_face" and row.get("person_id") is not None:
                    continue
                at = parse_time(row.get("at"))
                if at is not None and at > alert.last_at + timedelta(seconds=1):
                    continue
                event_id = str(row["event_id"])
                shot = requester.call("snapshot.get", {"event_id": event_id}, timeout)
                if isinstance(shot, dict) and isinstance(shot.get("data_b64"), str):
                    return alert.alert_id, event_id, base64.b64decode(shot["data_b64"])
                return None
            return None

        self.rc.run_job(job, then=self._snapshot_arrived, quiet=True)

    def _snapshot_arrived(self, result: tuple[str, str, bytes] | None) -> None:
        if result is None:
            return
        alert_id, event_id, data = result
        if alert_id != self._detail_for:
            return
        self.snapshot = decode_image(data)
        self.snapshot_event = event_id
        self.query_one("#alert-snapshot", Picture).image = self.snapshot
        self._show_details(force=True)

    def _change(self, method: str) -> None:
        alert = self.current()
        if alert is None:
            self.rc.notify("No alert selected.", severity="warning")
            return
        self.rc.request(method, {"alert_id": alert.alert_id}, then=self._changed)

    def _changed(self, result: Any) -> None:
        if isinstance(result, dict):
            self.rc.live.merge_alerts([result])
            self.rc.notify(f"Alert {ALERT_STATE_WORDS.get(str(result.get('state')), result.get('state'))}.")

    def action_acknowledge(self) -> None:
        self._change("alerts.acknowledge")

    def action_resolve(self) -> None:
        self._change("alerts.resolve")

    def action_open_snapshot(self) -> None:
        alert = self.current()
        if alert is not None:
            self.rc.push_screen(ImageScreen(f"{alert.rule}: {alert.subject}", self.snapshot, alert.message))


# --- attendance --------------------------------------------------------------------------------------------------


class AttendanceView(View):
    """One day: first in, last out, hours, with their photos; export to CSV."""

    TITLE = "Attendance"
    KEY = "t"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left_square_bracket", "day(-1)", "Prev day"),
        Binding("right_square_bracket", "day(1)", "Next day"),
        Binding("o", "pick_day", "Go to date"),
        Binding("x", "export", "Export CSV"),
    ]

    def __init__(self) -> None:
        super().__init__(id="attendance")
        self.day: date | None = None
        self.rows: list[dict[str, Any]] = []
        self.loaded_day: date | None = None
        self.last_export: Path | None = None
        self._photos_for: str | None = None

    def compose(self) -> ComposeResult:
        yield Label("", id="attendance-day")
        table: DataTable[str] = DataTable(id="attendance-table", cursor_type="row")
        self.sync = TableSync(
            table,
            [("name", "Name"), ("first", "First in"), ("last", "Last out"), ("hours", "Hours"), ("status", "Status")],
            sort=[("name", str.casefold, False)],
        )
        yield table
        with Horizontal(id="attendance-photos", classes="details"):
            yield Static("", id="attendance-text", markup=False)
            yield Picture(None, id="photo-in", classes="photo")
            yield Picture(None, id="photo-out", classes="photo")

    def on_mount(self) -> None:
        self.day = self.rc.clock().astimezone(self.rc.zone).date()
        self._label()

    def _label(self, note: str = "") -> None:
        assert self.day is not None
        text = f"Day {self.day.isoformat()} ({self.day.strftime('%a')})   [ ] day  o date  x export"
        if self.last_export is not None:
            text += f"   saved {self.last_export}"
        if note:
            text += f"   {note}"
        self.query_one("#attendance-day", Label).update(text)

    def load(self) -> None:
        if self.day is None:
            return
        day = self.day
        self.rc.request("attendance.day", {"date": day.isoformat()}, then=lambda result: self._loaded(day, result))

    def _loaded(self, day: date, result: Any) -> None:
        if day != self.day or not isinstance(result, list):
            return
        self.rows = [r for r in result if isinstance(r, dict)]
        self.loaded_day = day
        self.redraw(force=True)

    def redraw(self, force: bool = False) -> None:
        if not force:
            return
        now = self.rc.clock()
        desired: dict[str, tuple[str, ...]] = {}
        if self.loaded_day == self.day:
            for row in self.rows:
                person = str(row.get("person_id"))
                hours = row.get("hours")
                desired[person] = (
                    str(row.get("name") or person),
                    local_time(parse_time(row.get("first_in")), self.rc.zone, now),
                    local_time(parse_time(row.get("last_out")), self.rc.zone, now),
                    f"{hours:.2f}" if isinstance(hours, (int, float)) else "-",
                    str(row.get("status") or "-").upper(),
                )
        self.sync.sync(desired)
        self._label("" if desired or self.loaded_day != self.day else "nobody came this day")
        self._show_photos(force=True)

    def current(self) -> dict[str, Any] | None:
        """The row under the cursor."""
        key = self.sync.cursor_key()
        return next((r for r in self.rows if str(r.get("person_id")) == key), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_photos()

    def _show_photos(self, force: bool = False) -> None:
        row = self.current()
        text = self.query_one("#attendance-text", Static)
        if row is None:
            text.update("")
            return
        key = f"{row.get('person_id')}:{row.get('first_in_event')}:{row.get('last_out_event')}"
        if key == self._photos_for and not force:
            return
        text.update(
            f"{row.get('name')} ({row.get('person_id')})\n"
            f"first in: photo {'yes' if row.get('first_in_event') else 'none'}\n"
            f"last out: photo {'yes' if row.get('last_out_event') else 'none'}"
        )
        if key == self._photos_for:
            return
        self._photos_for = key
        for widget_id, event_field in (("#photo-in", "first_in_event"), ("#photo-out", "last_out_event")):
            self.query_one(widget_id, Picture).image = None
            event_id = row.get(event_field)
            if isinstance(event_id, str) and event_id:
                self._fetch(widget_id, key, event_id)

    def _fetch(self, widget_id: str, key: str, event_id: str) -> None:
        def arrived(result: Any) -> None:
            if key != self._photos_for or not isinstance(result, dict) or not isinstance(result.get("data_b64"), str):
                return
            self.query_one(widget_id, Picture).image = decode_image(base64.b64decode(result["data_b64"]))

        self.rc.request("snapshot.get", {"event_id": event_id}, then=arrived, quiet=True)

    def action_day(self, step: int) -> None:
        assert self.day is not None
        self.day += timedelta(days=step)
        self._label()
        self.redraw(force=True)
        self.load()

    def action_pick_day(self) -> None:
        assert self.day is not None

        def picked(values: dict[str, str] | None) -> None:
            if not values:
                return
            try:
                self.day = date.fromisoformat(values["date"].strip())
            except ValueError:
                self.rc.notify("Use YYYY-MM-DD.", severity="error")
                return
            self._label()
            self.redraw(force=True)
            self.load()

        self.rc.push_screen(FormScreen("Go to date", [("date", "Date (YYYY-MM-DD)", self.day.isoformat())]), picked)

    def action_export(self) -> None:
        if self.day is None or self.loaded_day != self.day:
            self.rc.notify("The day has not loaded yet; try again in a moment.", severity="warning")
            return
        folder = self.rc.export_dir
        path = folder / f"attendance-{self.day.isoformat()}.csv"
        fields = ["date", "person_id", "name", "first_in", "last_out", "hours", "status"]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                for row in sorted(self.rows, key=lambda r: str(r.get("name") or "").casefold()):
                    writer.writerow({"date": self.day.isoformat(), **{f: row.get(f) for f in fields[1:]}})
        except OSError as exc:
            self.rc.notify(f"Could not write {path}: {exc}", severity="error")
            return
        self.last_export = path.resolve()
        self._label()
        self.rc.notify(f"Saved {len(self.rows)} rows to {self.last_export}")


# --- people ------------------------------------------------------------------------------------------------------


class PeopleView(View):
    """Everyone enrolled; enrol from photos or at a door, remove with confirmation."""

    TITLE = "People"
    KEY = "u"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new_person", "New person"),
        Binding("g", "enrol_at_device", "Enrol at door"),
        Binding("delete", "remove", "Remove"),
    ]

    def __init__(self) -> None:
        super().__init__(id="people")
        self.people: list[dict[str, Any]] = []
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Label("n new person from photos   g enrol at a door   Del remove", id="people-hint")
        table: DataTable[str] = DataTable(id="people-table", cursor_type="row")
        self.sync = TableSync(
            table,
            [("name", "Name"), ("id", "ID"), ("templates", "Templates"), ("created", "Enrolled")],
            sort=[("name", str.casefold, False)],
        )
        yield table

    def load(self) -> None:
        self.rc.request("people.list", then=self._listed)

    def _listed(self, result: Any) -> None:
        if isinstance(result, list):
            self.people = [r for r in result if isinstance(r, dict)]
            self.loaded = True
            self.redraw(force=True)

    def redraw(self, force: bool = False) -> None:
        if not force:
            return
        now = self.rc.clock()
        self.sync.sync(
            {
                str(p["person_id"]): (
                    str(p.get("name")),
                    str(p["person_id"]),
                    str(p.get("templates", 0)),
                    local_time(parse_time(p.get("created_at")), self.rc.zone, now),
                )
                for p in self.people
            }
        )
        if self.loaded and not self.people:
            self.query_one("#people-hint", Label).update("Nobody enrolled yet. n: new person from photos.")
        else:
            self.query_one("#people-hint", Label).update(
                f"{len(self.people)} people   n new from photos   g enrol at a door   Del remove"
            )

    def current(self) -> dict[str, Any] | None:
        """The person under the cursor."""
        key = self.sync.cursor_key()
        return next((p for p in self.people if str(p.get("person_id")) == key), None)

    def action_new_person(self) -> None:
        def submitted(values: dict[str, str] | None) -> None:
            if not values or not values["name"].strip():
                return
            try:
                paths = shlex.split(values["paths"])
            except ValueError as exc:
                self.rc.notify(f"Could not read the paths: {exc}", severity="error")
                return
            self._enrol(values["name"].strip(), paths)

        self.rc.push_screen(
            FormScreen(
                "New person",
                [("name", "Name", ""), ("paths", "Photos or folders on the hub (space-separated, quote spaces)", "")],
            ),
            submitted,
        )

    def _enrol(self, name: str, paths: list[str]) -> None:
        requester = self.rc.requester
        timeout = self.rc.request_timeout_s

        def job() -> tuple[str, Any]:
            added = requester.call("people.add", {"name": name}, timeout)
            person_id = str(added["person_id"])
            if not paths:
                return person_id, None
            photo_paths: list[Any] = list(paths)
            return person_id, requester.call(
                "people.enrol_photos", {"person_id": person_id, "paths": photo_paths}, max(timeout, 120.0)
            )

        def done(result: tuple[str, Any]) -> None:
            person_id, enrolled = result
            lines = [f"{name} added as {person_id}."]
            if isinstance(enrolled, dict):
                lines.append(f"{enrolled.get('enrolled', 0)} photo(s) enrolled.")
                for photo in enrolled.get("photos") or []:
                    if isinstance(photo, dict):
                        word = "OK     " if photo.get("ok") else "REFUSED"
                        reason = f": {photo.get('reason')}" if photo.get("reason") else ""
                        lines.append(f"{word} {photo.get('photo')}{reason}")
            else:
                lines.append("No photos given: enrol at a door with g, or add photos later.")
            self.rc.push_screen(ReportScreen(f"Enrolled {name}", lines))
            self.load()

        self.rc.run_job(job, then=done)

    def action_enrol_at_device(self) -> None:
        person = self.current()
        if person is None:
            self.rc.notify("Select a person first.", severity="warning")
            return
        devices = [d.device for d in self.rc.live.devices()]

        def submitted(values: dict[str, str] | None) -> None:
            if not values:
                return
            try:
                count = int(values["count"])
            except ValueError:
                self.rc.notify("The count must be a whole number from 1 to 50.", severity="error")
                return
            params: dict[str, Any] = {
                "person_id": str(person["person_id"]),
                "device": values["device"].strip(),
                "count": count,
            }
            self.rc.request(
                "people.enrol_at_device",
                params,
                then=lambda r: self.rc.notify(
                    f"Asked {params['device']} for {count} captures of {person.get('name')}; stand at the camera."
                ),
            )

        self.rc.push_screen(
            FormScreen(
                f"Enrol {person.get('name')} at a door",
                [("device", "Door device id", devices[0] if devices else ""), ("count", "Captures (1-50)", "5")],
            ),
            submitted,
        )

    def action_remove(self) -> None:
        person = self.current()
        if person is None:
            self.rc.notify("Select a person first.", severity="warning")
            return
        person_id = str(person["person_id"])

        def answered(yes: bool | None) -> None:
            if not yes:
                return

            def removed(result: Any) -> None:
                self.rc.notify(f"Removed {person.get('name')} ({person_id}) and their templates and photos.")
                self.load()

            self.rc.request("people.remove", {"person_id": person_id}, then=removed)

        self.rc.push_screen(
            ConfirmScreen(
                f"Remove {person.get('name')} ({person_id})? This erases their templates, photos and their "
                "identity in past events, on the hub and every door."
            ),
            answered,
        )


# --- devices -----------------------------------------------------------------------------------------------------


class DevicesView(View):
    """Door devices: online/offline, last seen, fps, outbox, oldest unacked, gallery, temperature."""

    TITLE = "Devices"
    KEY = "d"

    def __init__(self) -> None:
        super().__init__(id="devices")
        self._drawn: tuple[int, int] | None = None

    def compose(self) -> ComposeResult:
        yield Label("", id="devices-hint")
        table: DataTable[str] = DataTable(id="devices-table", cursor_type="row")
        self.sync = TableSync(
            table,
            [
                ("device", "Device"),
                ("state", "State"),
                ("seen", "Last seen"),
                ("fps", "FPS"),
                ("outbox", "Outbox"),
                ("oldest", "Oldest unacked"),
                ("gallery", "Gallery"),
                ("temp", "Temp C"),
            ],
            sort=[("device", None, False)],
        )
        yield table

    def load(self) -> None:
        self.rc.request("devices.list", then=self._listed)

    def _listed(self, result: Any) -> None:
        if isinstance(result, list):
            self.rc.live.merge_devices([r for r in result if isinstance(r, dict)])

    def redraw(self, force: bool = False) -> None:
        now = self.rc.clock()
        key = (self.rc.live.version("devices"), int(now.timestamp()))
        if key == self._drawn and not force:
            return
        self._drawn = key
        devices = self.rc.live.devices()
        self.sync.sync(
            {
                d.device: (
                    d.device,
                    DEVICE_STATE_WORDS.get(d.status, d.status.upper()),
                    age((now - d.last_seen).total_seconds()) + " ago" if d.last_seen else "-",
                    number(d.fps),
                    number(d.outbox_depth),
                    age(d.oldest_unacked_s),
                    number(d.gallery_version),
                    number(d.temperature_c),
                )
                for d in devices
            }
        )
        online = sum(1 for d in devices if d.status == "online")
        self.query_one("#devices-hint", Label).update(
            f"{online} of {len(devices)} online"
            if devices
            else "No door devices yet: they appear when `rollcall edge run` connects."
        )


# --- workstation screens -----------------------------------------------------------------------------------------


class AgentCard(Vertical):
    """One workstation: name and state, its latest thumbnail, the active window."""

    can_focus = True

    def __init__(self, agent: str) -> None:
        super().__init__(classes="card", id=f"card-{agent}")
        self.agent = agent
        self.version = -1
        self.picture: PILImage.Image | None = None

    def compose(self) -> ComposeResult:
        yield Label(self.agent, classes="card-title", markup=False)
        yield Picture(None, classes="thumb")
        yield Label("", classes="card-window", markup=False)

    def ready(self) -> bool:
        """Whether the card and its parts are mounted (so it can be drawn)."""
        return self.is_mounted and bool(self.query(".card-window"))

    def show(self, state: AgentState) -> None:
        """Draw the agent's state (only when it changed)."""
        if state.version == self.version:
            return
        self.version = state.version
        status = "OFFLINE" if state.status in ("offline", "stopped") else (state.activity or state.status).upper()
        self.query_one(".card-title", Label).update(f"{state.agent} {status}")
        self.query_one(".card-window", Label).update(state.window or "-")
        if state.thumbnail is not None:
            self.picture = decode_image(state.thumbnail.data)
            self.query_one(".thumb", Picture).image = self.picture


class ScreensView(View):
    """A grid of workstation thumbnails; open one large, send a message, lock."""

    TITLE = "Screens"
    KEY = "s"
    CARD_WIDTH = 26
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open large"),
        Binding("m", "message", "Message"),
        Binding("l", "lock", "Lock"),
        Binding("left", "move(-1, 0)", "Left", show=False),
        Binding("right", "move(1, 0)", "Right", show=False),
        Binding("up", "move(0, -1)", "Up", show=False),
        Binding("down", "move(0, 1)", "Down", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="screens")
        self.cards: dict[str, AgentCard] = {}
        self._drawn: int | None = None
        self._pending = False
        self.columns = 3

    def compose(self) -> ComposeResult:
        yield Label(
            "No workstations yet. Screen agents (`rollcall agent run` on a workstation) appear here "
            "as soon as they connect.",
            id="screens-hint",
        )
        yield Grid(id="screens-grid")

    def on_resize(self, event: Resize) -> None:
        self.columns = max(1, event.size.width // self.CARD_WIDTH)
        self.query_one("#screens-grid", Grid).styles.grid_size_columns = self.columns

    def redraw(self, force: bool = False) -> None:
        version = self.rc.live.version("screens")
        if version == self._drawn and not force and not self._pending:
            return
        self._drawn = version
        agents = self.rc.live.agents()
        grid = self.query_one("#screens-grid", Grid)
        new = [AgentCard(a.agent) for a in agents if a.agent not in self.cards]
        if new:
            for card in new:
                self.cards[card.agent] = card
            grid.mount_all(new)
        self._pending = not self._draw_cards()  # cards still mounting are drawn on a later tick
        online = sum(1 for a in agents if a.status == "online")
        hint = self.query_one("#screens-hint", Label)
        if agents:
            hint.update(f"{online} of {len(agents)} workstations online   arrows move  Enter large  m message  l lock")

    def _draw_cards(self) -> bool:
        drawn = True
        for state in self.rc.live.agents():
            card = self.cards.get(state.agent)
            if card is None or not card.ready():
                drawn = False
            else:
                card.show(state)
        if drawn and self.app.focused is self and self.cards:
            self.focus_main()  # the first workstations arrived while this screen was shown
        return drawn

    def focus_main(self) -> None:
        selected = self.selected()
        if selected is not None:
            selected.focus()
        elif self.cards:
            next(iter(self.cards.values())).focus()
        else:
            self.focus()

    def selected(self) -> AgentCard | None:
        """The focused workstation card."""
        focused = self.app.focused
        return focused if isinstance(focused, AgentCard) else None

    def action_move(self, dx: int, dy: int) -> None:
        cards = list(self.query(AgentCard))
        if not cards:
            return
        current = self.selected()
        index = cards.index(current) if current in cards else 0
        index = min(max(0, index + dx + dy * self.columns), len(cards) - 1)
        cards[index].focus()
        cards[index].scroll_visible()

    def _agent_or_hint(self) -> AgentCard | None:
        card = self.selected()
        if card is None:
            self.rc.notify("No workstation selected (none connected yet?).", severity="warning")
        return card

    def action_open(self) -> None:
        card = self._agent_or_hint()
        if card is None:
            return
        state = self.rc.live.agent(card.agent)
        caption = f"{card.agent}: {state.window or '-'}" if state else card.agent
        self.rc.push_screen(ImageScreen(card.agent, card.picture, caption))

    def _command(self, agent: str, action: Literal["message", "lock"], text: str | None = None) -> None:
        command = wire.AgentCommand(
            command_id=str(ULID()), at=self.rc.clock(), action=action, text=text, issued_by=self.rc.issued_by
        )
        try:
            self.rc.live.send_agent_command(agent, command)
        except Exception as exc:
            self.rc.notify(f"Could not send: {exc}", severity="error")
            return
        self.rc.notify(f"Sent {action} to {agent}.")

    def action_message(self) -> None:
        card = self._agent_or_hint()
        if card is None:
            return
        agent = card.agent

        def submitted(values: dict[str, str] | None) -> None:
            if values and values["text"].strip():
                self._command(agent, "message", values["text"].strip())

        self.rc.push_screen(FormScreen(f"Message to {agent}", [("text", "Text shown on the screen", "")]), submitted)

    def action_lock(self) -> None:
        card = self._agent_or_hint()
        if card is None:
            return
        agent = card.agent

        def answered(yes: bool | None) -> None:
            if yes:
                self._command(agent, "lock")

        self.rc.push_screen(ConfirmScreen(f"Lock the screen of {agent}?"), answered)


# --- events ------------------------------------------------------------------------------------------------------


class EventsView(View):
    """The last events from every door, live."""

    TITLE = "Events"
    KEY = "e"

    def __init__(self, limit: int = 200) -> None:
        super().__init__(id="events")
        self.limit = limit
        self.backfill: dict[str, tuple[datetime, tuple[str, ...]]] = {}
        self._drawn: tuple[int, int] | None = None

    def compose(self) -> ComposeResult:
        yield Label("", id="events-hint")
        table: DataTable[str] = DataTable(id="events-table", cursor_type="row")
        self.sync = TableSync(
            table,
            [
                ("time", "Time"),
                ("door", "Door"),
                ("type", "Type"),
                ("person", "Person"),
                ("score", "Score"),
                ("photo", "Photo"),
            ],
            sort=[("time", None, False)],
        )
        yield table

    def load(self) -> None:
        if not self.backfill:
            self.rc.request("events.recent", {"limit": min(self.limit, 1000)}, then=self._recent)

    def _person_name(self, person_id: str | None, names: dict[str, str]) -> str:
        if person_id is None:
            return "UNKNOWN FACE"
        return names.get(person_id, person_id)

    def _recent(self, result: Any) -> None:
        if not isinstance(result, list):
            return
        names = {p.person_id: p.name for p in self.rc.live.presence()}
        for row in result:
            if not isinstance(row, dict):
                continue
            at = parse_time(row.get("at"))
            if at is None:
                continue
            person = row.get("person_id")
            score = row.get("score")
            self.backfill[str(row.get("event_id"))] = (
                at,
                (
                    sortable_time(at, self.rc.zone),
                    str(row.get("device")),
                    str(row.get("type")).upper(),
                    self._person_name(person if isinstance(person, str) else None, names),
                    f"{score:.2f}" if isinstance(score, (int, float)) else "-",
                    "yes" if row.get("has_snapshot") else "no",
                ),
            )
        self.redraw(force=True)

    def redraw(self, force: bool = False) -> None:
        key = (self.rc.live.version("events"), len(self.backfill))
        if key == self._drawn and not force:
            return
        self._drawn = key
        names = {p.person_id: p.name for p in self.rc.live.presence()}
        rows = dict(self.backfill)
        for event in self.rc.live.events(self.limit):
            rows[event.event_id] = (
                event.at,
                (
                    sortable_time(event.at, self.rc.zone),
                    event.device,
                    event.type.upper(),
                    self._person_name(event.person_id, names),
                    f"{event.score:.2f}",
                    "yes" if event.has_snapshot else "no",
                ),
            )
        newest = sorted(rows.items(), key=lambda item: item[1][0])[-self.limit :]
        table = self.query_one("#events-table", DataTable)
        at_end = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        self.sync.sync({event_id: cells for event_id, (_, cells) in newest})
        if at_end and table.row_count:
            table.move_cursor(row=table.row_count - 1)
        self.query_one("#events-hint", Label).update(
            f"last {len(newest)} events, newest at the bottom ({self.rc.live.events_seen} live since start)"
            if newest
            else "No events yet: they appear here as the doors see people."
        )
