"""The Attendance screen: one day's first in, last out and hours, with their photos; export to CSV."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Label, Static

from tui.protocol import Console
from tui.replies import parse_time, rows_of, snapshot_data
from tui.views.base import View
from tui.widgets.images import Picture, decode_image
from tui.widgets.tables import local_time


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

    def __init__(self, console: Console) -> None:
        super().__init__(console, id="attendance")
        self.day: date | None = None
        self.rows: list[dict[str, Any]] = []
        self.loaded_day: date | None = None
        self.last_export: Path | None = None
        self._photos_for: str | None = None
        self.day_chosen = False
        """The user moved to another day: the hub's day start no longer moves the view."""

    def compose(self) -> ComposeResult:
        yield Label("", id="attendance-day")
        yield self.table(
            "attendance-table",
            [("name", "Name"), ("first", "First in"), ("last", "Last out"), ("hours", "Hours"), ("status", "Status")],
            sort=[("name", str.casefold, False)],
        )
        with Horizontal(id="attendance-photos", classes="details"):
            yield Static("", id="attendance-text", markup=False)
            yield Picture(None, id="photo-in", classes="photo")
            yield Picture(None, id="photo-out", classes="photo")

    def on_mount(self) -> None:
        self.day = self.current_day()
        self._label()

    def site_known(self) -> None:
        if self.day_chosen or not self.is_mounted:
            return
        day = self.current_day()
        if day != self.day:
            self.day = day
            self._label()
            if self.console.live.connected and self.display:
                self.load()

    def current_day(self) -> date:
        """The attendance day now: the local date, or the day before while earlier than the day's start."""
        wall = self.console.clock().astimezone(self.console.zone)
        return wall.date() - timedelta(days=1) if wall.time() < self.console.day_starts_at else wall.date()

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
        self.console.request("attendance.day", {"date": day.isoformat()}, then=lambda result: self._loaded(day, result))

    def _loaded(self, day: date, result: Any) -> None:
        rows = rows_of(result)
        if day != self.day or rows is None:
            return
        self.rows = rows
        self.loaded_day = day
        self.redraw(force=True)

    def redraw(self, force: bool = False) -> None:
        if not force:
            return
        now = self.console.clock()
        desired: dict[str, tuple[str, ...]] = {}
        if self.loaded_day == self.day:
            for row in self.rows:
                person = str(row.get("person_id"))
                hours = row.get("hours")
                desired[person] = (
                    str(row.get("name") or person),
                    local_time(parse_time(row.get("first_in")), self.console.zone, now),
                    local_time(parse_time(row.get("last_out")), self.console.zone, now),
                    f"{hours:.2f}" if isinstance(hours, (int, float)) else "-",
                    str(row.get("status") or "-").upper(),
                )
        self.sync.sync(desired)
        self._label("" if desired or self.loaded_day != self.day else "nobody came this day")
        self._show_photos(force=True)

    def current(self) -> dict[str, Any] | None:
        """The row under the cursor."""
        return self.row_under_cursor(self.rows)

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
            if key != self._photos_for:
                return
            data = snapshot_data(result)
            if data is not None:
                self.query_one(widget_id, Picture).image = decode_image(data)

        self.console.request("snapshot.get", {"event_id": event_id}, then=arrived, quiet=True)

    def action_day(self, step: int) -> None:
        assert self.day is not None
        self.day += timedelta(days=step)
        self.day_chosen = True
        self._label()
        self.redraw(force=True)
        self.load()

    def action_pick_day(self) -> None:
        assert self.day is not None

        def picked(values: dict[str, str]) -> None:
            try:
                self.day = date.fromisoformat(values["date"].strip())
            except ValueError:
                self.console.notify("Use YYYY-MM-DD.", severity="error")
                return
            self.day_chosen = True
            self._label()
            self.redraw(force=True)
            self.load()

        self.console.ask("Go to date", [("date", "Date (YYYY-MM-DD)", self.day.isoformat())], picked)

    def action_export(self) -> None:
        if self.day is None or self.loaded_day != self.day:
            self.console.notify("The day has not loaded yet; try again in a moment.", severity="warning")
            return
        folder = self.console.export_dir
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
            self.console.notify(f"Could not write {path}: {exc}", severity="error")
            return
        self.last_export = path.resolve()
        self._label()
        self.console.notify(f"Saved {len(self.rows)} rows to {self.last_export}")
