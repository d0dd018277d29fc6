"""The Devices view against a real broker and hub: retire, rename, role, refusals, silent and retired devices shown."""

from __future__ import annotations

from collections.abc import Callable
from datetime import time, timedelta

from textual.widgets import DataTable, Input, Label

from edge.protocol import wire
from edge.protocol.hub_client import HubClient
from edge.protocol.mqtt import MqttLink
from hub.service import HubService
from tests.helpers.brokers import TestBroker
from tests.helpers.hub import Clock, HubStarter
from tests.helpers.mqtt import settings_for
from tests.tui.conftest import SITE, run, until
from tui.app import RollcallApp
from tui.live import LiveState
from tui.views.devices import DevicesView


def _register(hub: HubService, clock: Clock, *devices: str) -> None:
    with hub.store_lock:
        for device in devices:
            hub.store.upsert_device(device, role="both", last_seen=clock())


def _cell(app: RollcallApp, device: str, column: str) -> str:
    table = app.query_one("#devices-table", DataTable)
    return str(table.get_cell(device, column))


def _select(app: RollcallApp, device: str) -> None:
    table = app.query_one("#devices-table", DataTable)
    table.move_cursor(row=table.get_row_index(device))


def test_retire_rename_and_role_from_the_devices_view_change_the_hub(
    hub: HubService, clock: Clock, make_app: Callable[..., RollcallApp], publisher: MqttLink
) -> None:
    """Keys r (confirm y), n (form) and c (form) reach the hub's file; the row shows RETIRED, the name and role."""
    _register(hub, clock, "door-7", "door-8")
    publisher.publish(SITE.device_status("door-8"), wire.Status(client="door-8", state="online", at=clock()))
    app = make_app(timezone="UTC", day_starts_at=time(0, 0))  # the hub's Berlin and 04:00 must replace these

    async def scenario() -> None:
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.press("d")
            view = app.views["devices"]
            assert isinstance(view, DevicesView)
            await until(pilot, lambda: "door-7" in view.hub_rows and app.site_info_from_hub, what="devices.list")
            assert str(app.zone) == "Europe/Berlin" and app.day_starts_at == time(4, 0)
            await pilot.pause(0.3)
            _select(app, "door-7")
            await pilot.press("r")
            assert "Retire door-7?" in str(app.screen.query_one("#question", Label).render())
            await pilot.press("y")
            await until(pilot, lambda: _cell(app, "door-7", "state") == "RETIRED", what="door-7 RETIRED")
            assert "1 retired" in str(app.query_one("#devices-hint", Label).render())

            _select(app, "door-8")
            await pilot.press("n")
            field = app.screen.query_one("#field-name", Input)
            field.value = "Back door"
            await pilot.press("enter")
            await until(pilot, lambda: _cell(app, "door-8", "name") == "Back door", what="the new name")
            await pilot.press("c")
            app.screen.query_one("#field-role", Input).value = "exit"
            await pilot.press("enter")
            await until(pilot, lambda: _cell(app, "door-8", "role") == "exit", what="the new role")
            assert _cell(app, "door-8", "state") == "ONLINE"

            _select(app, "door-7")  # r on a retired device puts it back
            await pilot.press("r")
            assert "back into service" in str(app.screen.query_one("#question", Label).render())
            await pilot.press("y")
            await until(pilot, lambda: _cell(app, "door-7", "state") != "RETIRED", what="door-7 reinstated")

    run(scenario)
    with hub.store_lock:
        seven, eight = hub.store.get_device("door-7"), hub.store.get_device("door-8")
        actions = [row["action"] for row in hub.store.audit_log()]
    assert seven is not None and seven.retired_at is None
    assert eight is not None and (eight.name, eight.role) == ("Back door", "exit")
    assert actions.count("device.retire") == 1 and actions.count("device.reinstate") == 1


def test_a_viewer_is_told_clearly_and_silent_devices_show(
    broker: TestBroker, start_hub: HubStarter, clock: Clock, live: LiveState
) -> None:
    """A viewer's retire is refused with the hub's reason on screen and nothing changes; a quiet device is SILENT."""
    hub = start_hub('[supervisors.vera]\nrole = "viewer"\n', clock=clock)
    _register(hub, clock, "door-5")
    with hub.store_lock:
        hub.store.upsert_device("door-6", role="both", last_seen=clock() - timedelta(minutes=45))
    with HubClient(settings_for(broker), SITE, "vera") as vera:
        app = RollcallApp(live, vera, site="hq", timezone="Europe/Berlin", clock=clock, request_timeout_s=3.0)

        async def scenario() -> list[str]:
            async with app.run_test(size=(160, 40)) as pilot:
                await pilot.press("d")
                view = app.views["devices"]
                assert isinstance(view, DevicesView)
                await until(pilot, lambda: "door-6" in view.hub_rows and app.site_info_from_hub, what="devices")
                await until(pilot, lambda: _cell(app, "door-6", "state") == "SILENT", what="door-6 SILENT")
                assert _cell(app, "door-5", "state") != "SILENT"  # heard from just now
                _select(app, "door-5")
                await pilot.press("r", "y")
                await until(pilot, lambda: bool(app._notifications), what="the refusal")
                return [note.message for note in app._notifications]

        notes = run(scenario)
    assert any("Not allowed: devices.retire needs the admin role" in note for note in notes), notes
    with hub.store_lock:
        five = hub.store.get_device("door-5")
    assert five is not None and five.retired_at is None
