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

    def _cells(
        self,
        at: datetime,
        device: str,
        kind: str,
        person_id: str | None,
        score: object,
        has_snapshot: bool,
        names: dict[str, str],
    ) -> tuple[str, ...]:
        """One event's row, whether it came from the hub's backfill or live from the broker."""
        return (
            sortable_time(at, self.console.zone),
            device,
            kind.upper(),
            "UNKNOWN FACE" if person_id is None else names.get(person_id, person_id),
            f"{score:.2f}" if isinstance(score, (int, float)) else "-",  # a backfill row may lack a score
            "yes" if has_snapshot else "no",
        )

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
            self.backfill[str(row.get("event_id"))] = (
                at,
                self._cells(
                    at,
                    str(row.get("device")),
                    str(row.get("type")),
                    person if isinstance(person, str) else None,
                    row.get("score"),
                    bool(row.get("has_snapshot")),
                    names,
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
                self._cells(
                    event.at, event.device, event.type, event.person_id, event.score, event.has_snapshot, names
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
