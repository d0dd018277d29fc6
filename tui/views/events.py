"""The Events screen: the last events from every door, live, newest at the bottom."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from textual.app import ComposeResult
from textual.widgets import DataTable, Label

from tui.protocol import Console
from tui.replies import parse_time, rows_of
from tui.views.base import View
from tui.widgets.tables import sortable_time


class EventsView(View):
    """The last events from every door, live."""

    TITLE = "Events"
    KEY = "e"

    def __init__(self, console: Console, limit: int = 200) -> None:
        super().__init__(console, id="events")
        self.limit = limit
        self.backfill: dict[str, tuple[datetime, tuple[str, ...]]] = {}
        self._drawn: tuple[int, int] | None = None

    def compose(self) -> ComposeResult:
        yield Label("", id="events-hint")
        yield self.table(
            "events-table",
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

    def load(self) -> None:
        if not self.backfill:
            self.console.request("events.recent", {"limit": min(self.limit, 1000)}, then=self._recent)

    def _person_name(self, person_id: str | None, names: dict[str, str]) -> str:
        if person_id is None:
            return "UNKNOWN FACE"
        return names.get(person_id, person_id)

    def _recent(self, result: Any) -> None:
        rows = rows_of(result)
        if rows is None:
            return
        names = {p.person_id: p.name for p in self.console.live.presence()}
        for row in rows:
            at = parse_time(row.get("at"))
            if at is None:
                continue
            person = row.get("person_id")
            score = row.get("score")
            self.backfill[str(row.get("event_id"))] = (
                at,
                (
                    sortable_time(at, self.console.zone),
                    str(row.get("device")),
                    str(row.get("type")).upper(),
                    self._person_name(person if isinstance(person, str) else None, names),
                    f"{score:.2f}" if isinstance(score, (int, float)) else "-",
                    "yes" if row.get("has_snapshot") else "no",
                ),
            )
        self.redraw(force=True)

    def redraw(self, force: bool = False) -> None:
        key = (self.console.live.version("events"), len(self.backfill))
        if key == self._drawn and not force:
            return
        self._drawn = key
        names = {p.person_id: p.name for p in self.console.live.presence()}
        rows = dict(self.backfill)
        for event in self.console.live.events(self.limit):
            rows[event.event_id] = (
                event.at,
                (
                    sortable_time(event.at, self.console.zone),
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
            f"last {len(newest)} events, newest at the bottom ({self.console.live.events_seen} live since start)"
            if newest
            else "No events yet: they appear here as the doors see people."
        )
