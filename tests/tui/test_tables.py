"""TableSync on big tables: values that change size a column only when they widen it (no re-measuring a column)."""

from __future__ import annotations

from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widgets import DataTable
from textual.widgets import _data_table as data_table_module

from tests.tui.conftest import run
from tui.widgets.tables import TableSync

ROWS = 2_000


class OneTable(App[None]):
    def compose(self) -> ComposeResult:
        yield DataTable()


def test_narrower_values_never_make_the_table_measure_a_whole_column(monkeypatch: pytest.MonkeyPatch) -> None:
    measured: list[int] = []
    from textual.render import measure as real_measure  # what the DataTable module imported

    def counting_measure(*args: Any, **kwargs: Any) -> int:
        measured.append(1)
        return real_measure(*args, **kwargs)

    monkeypatch.setattr(data_table_module, "measure", counting_measure)

    async def scenario() -> tuple[int, int, int, str]:
        app = OneTable()
        async with app.run_test(size=(120, 40)) as pilot:
            table: DataTable[str] = app.query_one(DataTable)
            sync = TableSync(table, [("name", "Name"), ("state", "State")])
            rows = {f"p-{n:05d}": (f"Person {n:05d}", "UNKNOWN") for n in range(ROWS)}
            sync.sync(rows)
            await pilot.pause()
            measured.clear()
            # A board: 50 people come in (a narrower word than UNKNOWN), 50 new people arrive.
            for n in range(50):
                rows[f"p-{n:05d}"] = (f"Person {n:05d}", "IN")
                rows[f"q-{n:05d}"] = (f"Newcomer {n:05d}", "IN")
            sync.sync(rows)
            await pilot.pause()
            narrower = len(measured)
            state = table.columns[next(k for k in table.columns if k.value == "state")]
            width_after_narrower = state.content_width
            rows["p-00001"] = ("Person 00001", "IN SINCE A VERY LONG TIME")
            sync.sync(rows)
            await pilot.pause()
            return narrower, width_after_narrower, state.content_width, str(table.get_cell("p-00003", "state"))

    narrower, width_before, width_after, shown = run(scenario)
    # Before the fix each narrower cell made the table measure its whole column again: 50 x 2,000 = 100,000 calls.
    assert narrower < 1_000, f"{narrower} measurements for 100 changed rows of a {ROWS}-row table"
    assert shown == "IN"
    assert width_before == len("UNKNOWN") and width_after == len("IN SINCE A VERY LONG TIME"), "a wider value widens"
