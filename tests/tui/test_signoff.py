"""Sign-off through a real broker and hub file with a hand-set clock: days become final without further events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from textual.widgets import Label

from edge.protocol import wire
from edge.protocol.hub_client import HubClient, HubRequestFailed
from hub.service import HubService
from tests.helpers.factories import make_event
from tests.helpers.hub import Clock, HubStarter, feed
from tests.tui.conftest import run, until
from tui.app import RollcallApp

CAMERAS = """
[[cameras]]
device = "door-1"
role = "entrance"

[[cameras]]
device = "door-2"
role = "exit"

[[cameras]]
device = "door-3"
role = "both"
"""
MON = date(2026, 11, 23)
"""Berlin is UTC+1 in November: 08:00 local is 07:00 UTC; the day (04:00 to 04:00 local) ends Tue 03:00 UTC."""


def utc(day: date, hour: int, minute: int = 0) -> datetime:
    """A Berlin wall time on ``day`` as a UTC instant (UTC+1 in November)."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - timedelta(hours=1)


def health(device: str, at: datetime, outbox_depth: int = 0) -> wire.Health:
    """A health report: with an empty outbox it proves the device delivered everything before ``at``."""
    return wire.Health(device=device, at=at, uptime_s=60, fps=5, cpu_percent=10, outbox_depth=outbox_depth)


@pytest.fixture
def signoff_hub(start_hub: HubStarter, clock: Clock) -> HubService:
    """A hub with an entrance, an exit and a two-way camera (sign-off 30 min after a day ends); Ana and Ben."""
    clock.now = utc(MON, 7)
    hub = start_hub(CAMERAS, clock=clock)
    with hub.store_lock:
        for name in ("Ana", "Ben"):
            hub.store.add_person(name, clock(), person_id=f"p-{name.lower()}")
    return hub


def statuses(hub: HubService, day: date) -> dict[str, tuple[str | None, bool, float]]:
    """(status, final, hours) per person on ``day``, as stored in the hub's file."""
    with hub.store_lock:
        return {r.person_id: (r.status, r.final, round(r.present_s / 3600, 2)) for r in hub.store.attendance(day)}


def test_days_are_signed_off_without_further_events_and_keep_forgotten_checkouts(
    signoff_hub: HubService, clock: Clock, client: HubClient
) -> None:
    hub = signoff_hub
    # Monday: Ana comes in and leaves; Ben comes in through the entrance-only door and never checks out.
    clock.now = utc(MON, 18)
    feed(
        hub,
        make_event(device="door-1", seq=1, at=utc(MON, 8), person_id="p-ana"),
        make_event(device="door-2", seq=1, at=utc(MON, 17), person_id="p-ana"),
        make_event(device="door-1", seq=2, at=utc(MON, 9), person_id="p-ben"),
    )
    assert statuses(hub, MON)["p-ben"][0] == "open", "the day has not ended: Ben may still leave"

    # Tuesday 05:00 local: the day ended an hour ago. door-1 and door-2 report empty outboxes; door-3 (seeing
    # nobody) is silent: it holds the day open, so the sweep shows the forgotten check-out but signs nothing off.
    tue = MON + timedelta(days=1)
    clock.now = utc(tue, 5)
    feed(hub, health("door-1", clock.now), health("door-2", clock.now))
    assert hub.sign_off(clock.now) == 0
    assert statuses(hub, MON) == {"p-ana": ("open", False, 9.0), "p-ben": ("forgot_checkout", False, 0.0)}

    # A device unplugged for good is retired through the API (admin): the day is signed off with no event at all.
    assert client.call("devices.retire", {"device": "door-3"})["device"] == "door-3"
    listed = {d["device"]: d for d in client.call("devices.list")}
    assert listed["door-3"]["retired_at"] is not None and listed["door-3"]["silent"] is False
    assert listed["door-1"]["delivered_through"] is not None
    assert statuses(hub, MON) == {"p-ana": ("final", True, 9.0), "p-ben": ("forgot_checkout", True, 0.0)}
    day = {row["person_id"]: row for row in client.call("attendance.day", {"date": MON.isoformat()})}
    assert (day["p-ben"]["status"], day["p-ben"]["final"]) == ("forgot_checkout", True), "visible after sign-off"

    # Wednesday: both remaining devices deliver past the end only through health reports; the timer's sweep (no
    # event for anyone) signs Tuesday's late arrival off once the settle delay has passed.
    clock.now = utc(tue, 11)
    feed(hub, make_event(device="door-1", seq=3, at=utc(tue, 10), person_id="p-ana"))
    wed = tue + timedelta(days=1)
    clock.now = utc(wed, 4, 10)  # ended ten minutes ago: before the 30-minute settle delay
    feed(hub, health("door-1", clock.now), health("door-2", clock.now))
    hub.sign_off(clock.now)
    assert statuses(hub, tue)["p-ana"][:2] == ("forgot_checkout", False)
    clock.now = utc(wed, 5)
    feed(hub, health("door-1", clock.now), health("door-2", clock.now))
    assert hub.sign_off(clock.now) == 1
    assert statuses(hub, tue)["p-ana"][:2] == ("forgot_checkout", True)


def test_retire_rename_and_set_role_need_known_devices_and_the_config_keeps_its_roles(
    signoff_hub: HubService, client: HubClient
) -> None:
    with signoff_hub.store_lock:
        signoff_hub.store.upsert_device("door-9", role="both")
    assert client.call("devices.rename", {"device": "door-9", "name": "Back door"}) == {
        "device": "door-9",
        "name": "Back door",
    }
    assert client.call("devices.set_role", {"device": "door-9", "role": "exit"})["role"] == "exit"
    with signoff_hub.store_lock:
        stored = signoff_hub.store.get_device("door-9")
    assert stored is not None and (stored.name, stored.role) == ("Back door", "exit")
    with pytest.raises(HubRequestFailed, match="no device 'door-404'"):
        client.call("devices.retire", {"device": "door-404"})
    with pytest.raises(HubRequestFailed, match=r"\[\[cameras\]\]"):
        client.call("devices.set_role", {"device": "door-1", "role": "exit"})


def test_the_attendance_view_opens_on_the_current_attendance_day_after_midnight(
    signoff_hub: HubService, clock: Clock, make_app: Callable[..., RollcallApp]
) -> None:
    """At 00:30 before a 04:00 day start the people inside are on the previous day, and the view opens there.

    The TUI learns the day start from the hub's ``site.info``; its own ``[tui] day_starts_at`` is only a fallback.
    """
    hub = signoff_hub
    clock.now = utc(MON, 22)
    feed(hub, make_event(device="door-1", seq=1, at=utc(MON, 21), person_id="p-ana"))
    clock.now = utc(MON + timedelta(days=1), 0, 30)
    app = make_app(day_starts_at=datetime.min.time())  # a wrong local fallback: the hub's 04:00 (site.info) wins

    async def scenario() -> str:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("t")
            view = app.views["attendance"]
            await until(pilot, lambda: bool(getattr(view, "rows", None)), what="Monday's rows")
            return str(app.query_one("#attendance-day", Label).render())

    label = run(scenario)
    assert label.startswith(f"Day {MON.isoformat()}"), label
    assert "nobody came" not in label
