"""Incremental DataTable updates and the small text formats the screens share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from rich.cells import cell_len
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from tui.widgets.textual_fixes import forget_stale_renders

Cells = tuple[str, ...]

REFILL_OVER = 200
"""A sync that removes more rows than this clears and refills the table instead (``DataTable.remove_row`` costs
time in proportion to the rows left, so thousands of removals one by one take tens of seconds)."""


class TableSync:
    """Keeps a DataTable equal to a desired set of rows by adding, removing and updating cells, never rebuilding.

    ``columns`` are ``(key, label)`` pairs. ``sort`` (column keys, with an optional key function per column)
    orders the rows after new ones were added; updates in place keep the order.
    """

    def __init__(
        self,
        table: DataTable[Any],
        columns: Sequence[tuple[str, str]],
        sort: Sequence[tuple[str, Callable[[Any], Any] | None, bool]] = (),
    ) -> None:
        self.table = table
        self.keys = [key for key, _ in columns]
        self.sort = sort
        self.rows: dict[str, Cells] = {}
        self.full_rebuilds = 0
        """How often the table was cleared and refilled (only :meth:`rebuild` does that)."""
        self.cell_updates = 0
        self.refills = 0
        """How often a change that removed more than ``REFILL_OVER`` rows (a search, a filter) refilled the table."""
        self.rows_added = 0
        self.rows_removed = 0
        for key, label in columns:
            table.add_column(label, key=key)

    def sync(self, desired: Mapping[str, Cells]) -> bool:
        """Make the table show ``desired`` (row key → cells); returns whether anything changed."""
        table = self.table
        changed = False
        leaving = [k for k in self.rows if k not in desired]
        if len(leaving) > REFILL_OVER:
            self._refill(desired)
            return True
        for key in leaving:
            table.remove_row(key)
            del self.rows[key]
            self.rows_removed += 1
            changed = True
        added = False
        new_keys: list[str] = []
        for key, cells in desired.items():
            old = self.rows.get(key)
            if old is None:
                table.add_row(*cells, key=key)
                new_keys.append(key)
                self.rows_added += 1
                added = True
            elif old != cells:
                for column, before, after in zip(self.keys, old, cells, strict=True):
                    if before != after:
                        table.update_cell(key, column, after, update_width=self._widens(column, after))
                        self.cell_updates += 1
            else:
                continue
            self.rows[key] = cells
            changed = True
        if new_keys:
            self._fit_columns(desired[key] for key in new_keys)
        if added:
            self.apply_sort()
        if changed:
            forget_stale_renders(table)
        return changed

    def _fit_columns(self, rows: Iterable[Cells]) -> None:
        """Widen the columns to the new rows' cells now, not on the table's next idle.

        DataTable sizes the columns of added rows on idle, and its cached cell renders do not depend on the width: a
        frame drawn in between (a busy app, a slow machine) could keep cells cut to the header's width. Seen as a
        People view with header-wide columns, one run in three. Columns here only ever widen; a refill starts afresh.
        """
        widest = [0] * len(self.keys)
        for cells in rows:
            for index, cell in enumerate(cells):
                width = cell_len(cell)
                if width > widest[index]:
                    widest[index] = width
        for key, width in zip(self.keys, widest, strict=True):
            column = self.table.columns.get(ColumnKey(key))
            if column is not None and width > column.content_width:
                column.content_width = width

    def _widens(self, column: str, value: str) -> bool:
        """Whether ``value`` is wider than its column's content: only then is the cell sized.

        DataTable sizes an updated cell on idle, and a value narrower than its column makes it measure every cell of
        that column again to see whether the column may shrink: with 5,000 rows, 50 changed cells cost 170,000
        measurements (7 s with 10,000 people). Columns here only ever widen; a refill sizes them afresh.
        """
        found = self.table.columns.get(ColumnKey(column))
        return found is None or cell_len(value) > found.content_width

    def _refill(self, desired: Mapping[str, Cells]) -> None:
        """Clear and fill the table at once, keeping the cursor on its row when it stays.

        For a search or filter that hides thousands of rows: removing them one by one took a minute with 10,000.
        """
        table = self.table
        cursor = self.cursor_key()
        table.clear()
        self.rows = dict(desired)
        for key, cells in desired.items():
            table.add_row(*cells, key=key)
        self._fit_columns(desired.values())
        self.refills += 1
        self.apply_sort()
        if cursor is not None and cursor in self.rows:
            table.move_cursor(row=table.get_row_index(cursor), scroll=True)

    def apply_sort(self) -> None:
        """Order the rows (stable sorts, last criterion first)."""
        for column, key, reverse in reversed(self.sort):
            self.table.sort(column, key=key, reverse=reverse)

    def rebuild(self, desired: Mapping[str, Cells]) -> None:
        """Clear and refill (counted: the live path never calls this)."""
        self.table.clear()
        self.rows.clear()
        self.full_rebuilds += 1
        self.sync(desired)

    def cursor_key(self) -> str | None:
        """The row key under the cursor, if any."""
        table = self.table
        if table.row_count == 0:
            return None
        try:
            row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:
            return None
        return None if row_key.value is None else str(row_key.value)


def local_time(value: datetime | None, zone: tzinfo, now: datetime, *, seconds: bool = False) -> str:
    """A time for a table cell: HH:MM on the same local day as ``now``, else MM-DD HH:MM; '-' for none."""
    if value is None:
        return "-"
    local = value.astimezone(zone)
    fmt = "%H:%M:%S" if seconds else "%H:%M"
    if local.date() == now.astimezone(zone).date():
        return local.strftime(fmt)
    return local.strftime("%m-%d " + fmt)


def sortable_time(value: datetime | None, zone: tzinfo) -> str:
    """MM-DD HH:MM:SS, which sorts as text within a year."""
    return "-" if value is None else value.astimezone(zone).strftime("%m-%d %H:%M:%S")


def age(seconds: float | None) -> str:
    """A short age: 12s, 5m, 3h, 2d; '-' for none."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def number(value: float | int | None, digits: int = 1) -> str:
    """A figure for a table cell; '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"
