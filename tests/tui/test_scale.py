"""The TUI with a site of 10,000 people: search, scroll and filter the Presence and People views (timings printed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import JsonValue
from textual.pilot import Pilot
from textual.widgets import DataTable

from edge.protocol import wire
from tests.tui.conftest import START, run
from tui.app import RollcallApp
from tui.live import LiveState

SITE = wire.Topics("hq")
PEOPLE = 10_000
PRESENCE = wire.TopicRef("rollcall", "hq", "hub", None, "presence")


def name(n: int) -> str:
    return f"Person {n:05d}"


def state_of(n: int) -> str:
    return "in" if n % 3 == 0 else "out" if n % 3 == 1 else "unknown"


def entry(n: int, state: str) -> wire.PresenceEntry:
    return wire.PresenceEntry(
        person_id=f"p-{n:05d}",
        name=name(n),
        state=state,  # type: ignore[arg-type]
        since=None if state == "unknown" else START - timedelta(minutes=n % 600),
        door=None if state == "unknown" else f"door-{n % 100:03d}",
    )


def matched_text(n: int) -> str:
    """What the Presence view's search looks in: name, id, door."""
    door = "" if state_of(n) == "unknown" else f"door-{n % 100:03d}"
    return f"{name(n)}\np-{n:05d}\n{door}".casefold()


def board(changed: dict[int, str] | None = None) -> wire.Presence:
    changed = changed or {}
    return wire.Presence(at=START, people=[entry(n, changed.get(n, state_of(n))) for n in range(PEOPLE)])


class BigSite:
    """Answers the TUI's requests for a site of ``PEOPLE`` people (the presence board comes from the live state)."""

    def call(self, method: str, params: dict[str, JsonValue] | None = None, timeout: float = 10.0) -> Any:
        if method == "people.list":
            return [
                {"person_id": f"p-{n:05d}", "name": name(n), "templates": 3, "created_at": "2026-11-02T08:00:00Z"}
                for n in range(PEOPLE)
            ]
        if method == "site.info":
            return {"site": "hq", "timezone": "Europe/Berlin", "day_starts_at": "04:00", "device_silent_after_min": 30}
        if method in ("alerts.list", "events.recent", "presence.get", "devices.list", "attendance.day"):
            return []
        return {}


async def until(pilot: Pilot[Any], done: Callable[[], bool], what: str, limit_s: float = 60.0) -> float:
    """Wait (letting the app run) until ``done()``; the seconds it took."""
    started = time.perf_counter()
    while not done():
        assert time.perf_counter() - started < limit_s, f"{what}: not within {limit_s:.0f} s"
        await pilot.pause(0.02)
    return time.perf_counter() - started


def shown(table: DataTable[Any], column: int = 1) -> list[str]:
    """The values of one column, in the order the table shows its rows."""
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


def test_presence_and_people_with_ten_thousand_people_search_scroll_and_filter() -> None:
    timings = run(scenario)
    for what, seconds in timings.items():
        print(f"tui with {PEOPLE} people: {what}: {seconds * 1000:.0f} ms")


async def scenario() -> dict[str, float]:
    live = LiveState(None, SITE, "tui-scale", clock=lambda: START)
    live.handle_connection(True)
    live.apply(PRESENCE, board())
    app = RollcallApp(live, BigSite(), site="hq", timezone="Europe/Berlin", clock=lambda: START, poll_s=3600.0)
    timings: dict[str, float] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one("#presence-table", DataTable)
        timings["presence first fill"] = await until(pilot, lambda: table.row_count == PEOPLE, "the first fill")

        await pilot.press("slash")
        started = time.perf_counter()
        await pilot.press(*"00999")
        await until(pilot, lambda: table.row_count == 1, "the search")
        timings["search typed (5 keys)"] = time.perf_counter() - started
        assert shown(table) == ["p-00999"]

        started = time.perf_counter()
        await pilot.press("backspace", "backspace")  # "009": names, ids and doors with it
        expected = sorted(f"p-{n:05d}" for n in range(PEOPLE) if "009" in matched_text(n))
        await until(pilot, lambda: table.row_count == len(expected), "the wider search")
        timings["search widened"] = time.perf_counter() - started
        assert sorted(shown(table)) == expected

        await pilot.press("escape")  # clears the search, back to all
        timings["search cleared"] = await until(pilot, lambda: table.row_count == PEOPLE, "clearing the search")

        started = time.perf_counter()
        await pilot.press("f")  # all -> in
        in_count = sum(1 for n in range(PEOPLE) if state_of(n) == "in")
        await until(pilot, lambda: table.row_count == in_count, "the filter")
        timings["filter in"] = time.perf_counter() - started
        assert set(shown(table, 2)) == {"IN"}

        started = time.perf_counter()
        await pilot.press("ctrl+end")
        await until(pilot, lambda: table.cursor_row == in_count - 1, "scrolling to the end")
        await pilot.press("pageup", "pageup", "up")
        timings["scroll"] = time.perf_counter() - started
        assert table.get_row_at(table.cursor_row)[2] == "IN"
        assert table.scroll_y > 0, "the table scrolled down"

        # A board with 50 changes arrives while filtered: people who came in show up, people who left go.
        arrived = {n: "in" for n in range(1, 150, 3)}  # were out
        left = {n: "out" for n in range(0, 60, 3)}  # were in
        live.apply(PRESENCE, board(arrived | left))
        started = time.perf_counter()
        count = in_count + len(arrived) - len(left)
        await until(pilot, lambda: table.row_count == count, "the new board")
        timings["new board, 70 changes, filtered"] = time.perf_counter() - started
        assert "p-00001" in shown(table) and "p-00000" not in shown(table)

        await pilot.press("u")  # People
        people = app.query_one("#people-table", DataTable)
        timings["people first fill"] = await until(pilot, lambda: people.row_count == PEOPLE, "the People list")
        started = time.perf_counter()
        await pilot.press("ctrl+end")
        await until(pilot, lambda: people.cursor_row == PEOPLE - 1, "scrolling the People list")
        timings["people scroll to end"] = time.perf_counter() - started
        assert people.get_row_at(people.cursor_row)[1] == f"p-{PEOPLE - 1:05d}"

        await pilot.press("slash")  # People has a search too: by name or id
        started = time.perf_counter()
        await pilot.press(*"0777")
        expected_people = sorted(f"p-{n:05d}" for n in range(PEOPLE) if "0777" in f"{name(n)}\np-{n:05d}".casefold())
        await until(pilot, lambda: people.row_count == len(expected_people), "the People search")
        timings["people search (4 keys)"] = time.perf_counter() - started
        assert sorted(shown(people)) == expected_people and "p-00777" in expected_people
        await pilot.press("enter", "escape")  # back to the list, then clear the search
        await until(pilot, lambda: people.row_count == PEOPLE, "clearing the People search")
    return timings
