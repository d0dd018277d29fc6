"""The Presence screen: everyone with in/out, since when and at which door; filter and search."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Label

from tui.protocol import Console
from tui.replies import rows_of
from tui.views.base import Searchable
from tui.widgets.tables import local_time

STATE_WORDS = {"in": "IN", "out": "OUT", "unknown": "UNKNOWN"}


class PresenceView(Searchable):
    """Everyone with in/out, since when and at which door; filter and search."""

    TITLE = "Presence"
    KEY = "p"
    SEARCH_ID = "presence-search"
    FILTERS: ClassVar[tuple[str, ...]] = ("all", "in", "out", "unknown")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("f", "cycle_filter", "Filter in/out")]

    def __init__(self, console: Console) -> None:
        super().__init__(console, id="presence")
        self.filter = "all"
        self._drawn: tuple[int, str, str, str] | None = None

    def compose(self) -> ComposeResult:
        yield self.search_box("search name, id or door; Enter: back to the list, Esc: clear")
        yield Label("", id="presence-filter")
        yield self.table(
            "presence-table",
            [("name", "Name"), ("id", "ID"), ("state", "State"), ("since", "Since"), ("door", "Door")],
            sort=[("name", str.casefold, False)],
        )

    def on_mount(self) -> None:
        self.redraw(force=True)

    def load(self) -> None:
        live = self.console.live
        if live.version("presence") == 0 or live.presence_refused:
            asked_at = live.version("presence")
            self.console.request("presence.get", then=lambda result: self._board(result, asked_at))

    def _board(self, result: Any, asked_at: int) -> None:
        live = self.console.live
        if live.version("presence") != asked_at and not live.presence_refused:
            return  # a newer board came from the broker meanwhile
        rows = rows_of(result)
        if rows is not None:
            live.set_presence(rows, self.console.clock())

    def redraw(self, force: bool = False) -> None:
        now = self.console.clock()
        today = now.astimezone(self.console.zone).date().isoformat()
        key = (self.console.live.version("presence"), self.filter, self.query_text, today)
        if key == self._drawn and not force:
            return
        self._drawn = key
        desired: dict[str, tuple[str, ...]] = {}
        board = self.console.live.presence()
        for entry in board:
            if self.filter != "all" and entry.state != self.filter:
                continue
            if not self.matches(entry.name, entry.person_id, entry.door or ""):
                continue
            desired[entry.person_id] = (
                entry.name,
                entry.person_id,
                STATE_WORDS[entry.state],
                local_time(entry.since, self.console.zone, now),
                entry.door or "-",
            )
        self.sync.sync(desired)
        total = len(board)
        search = f"  search: {self.query_text!r}" if self.query_text else ""
        self.query_one("#presence-filter", Label).update(
            f"showing {len(desired)} of {total} (filter: {self.filter}){search}   / search  f filter"
        )

    def action_cycle_filter(self) -> None:
        self.filter = self.FILTERS[(self.FILTERS.index(self.filter) + 1) % len(self.FILTERS)]
        self.redraw()
