"""The common base of the TUI's screens: :class:`View`, which a :class:`tui.protocol.Console` drives.

Each view redraws from :class:`tui.live.LiveState` only when the area it shows changed (the app's timer asks it
at most ``max_redraw_hz`` times a second), and updates its table in place through
:class:`tui.widgets.tables.TableSync`. Questions for the hub go through :meth:`tui.protocol.Console.request`, which
runs them off the UI thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Input

from tui.protocol import Console
from tui.widgets.tables import TableSync


class View(Vertical):
    """A screen of the TUI; shown one at a time."""

    can_focus = True
    TITLE: ClassVar[str] = ""
    KEY: ClassVar[str] = ""
    sync: TableSync
    """The view's table, kept equal to what it should show (views with a table make it with :meth:`table`)."""

    def __init__(self, console: Console, id: str | None = None) -> None:
        super().__init__(id=id)
        self.console = console

    def table(
        self,
        table_id: str,
        columns: Sequence[tuple[str, str]],
        sort: Sequence[tuple[str, Callable[[Any], Any] | None, bool]] = (),
    ) -> DataTable[str]:
        """A row-cursor table with ``(key, label)`` columns, synced by :attr:`sync` (yield it from ``compose``)."""
        table: DataTable[str] = DataTable(id=table_id, cursor_type="row")
        self.sync = TableSync(table, columns, sort=sort)
        return table

    def row_under_cursor(self, rows: Sequence[dict[str, Any]], key: str = "person_id") -> dict[str, Any] | None:
        """The reply row under the table's cursor (rows are keyed in the table by their ``key`` field)."""
        cursor = self.sync.cursor_key()
        return next((row for row in rows if str(row.get(key)) == cursor), None)

    def load(self) -> None:
        """Ask the hub for what this view needs (on show, after a reconnect, on a poll)."""

    def site_known(self) -> None:
        """The hub told the site's time zone and day start (they may differ from the local fallbacks)."""

    def redraw(self, force: bool = False) -> None:
        """Bring the view up to date with the live state (cheap when nothing changed)."""

    def focus_main(self) -> None:
        """Put the keyboard focus where this view's keys work."""
        tables = list(self.query(DataTable))
        if tables:
            tables[0].focus()
        else:
            self.focus()


class Searchable(View):
    """A view with a search box over its table: ``/`` opens it, typing narrows the rows, Esc clears it.

    Subclasses yield :meth:`search_box` in ``compose`` and filter their rows with :meth:`matches` in ``redraw``.
    """

    SEARCH_ID: ClassVar[str] = ""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search"),
        Binding("escape", "clear_search", "Clear search", show=False),
    ]

    def __init__(self, console: Console, id: str | None = None) -> None:
        super().__init__(console, id=id)
        self.query_text = ""

    def search_box(self, placeholder: str) -> Input:
        """The search input (hidden until ``/``)."""
        box = Input(placeholder=placeholder, id=self.SEARCH_ID, classes="search")
        box.display = False
        return box

    def matches(self, *texts: str) -> bool:
        """Whether a row with these texts passes the search (case-insensitive substring of any of them)."""
        needle = self.query_text.casefold()
        return not needle or needle in "\n".join(texts).casefold()

    def action_search(self) -> None:
        box = self.query_one(f"#{self.SEARCH_ID}", Input)
        box.display = True
        box.focus()

    def action_clear_search(self) -> None:
        box = self.query_one(f"#{self.SEARCH_ID}", Input)
        box.value = ""
        self.query_text = ""
        box.display = False
        self.focus_main()
        self.redraw()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == self.SEARCH_ID:
            self.query_text = event.value.strip()
            self.redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == self.SEARCH_ID:
            if not event.value.strip():
                event.input.display = False
            self.focus_main()
