"""The TUI driven by Pilot against a real hub fed through a real broker: every screen and every binding."""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from textual.widgets import ContentSwitcher, Input, Static
from ulid import ULID

from edge.protocol import wire
from edge.protocol.mqtt import MqttLink, Received
from hub.service import HubService
from tests.helpers.brokers import TestBroker
from tests.helpers.factories import make_event
from tests.helpers.hub import Clock, feed
from tests.helpers.mqtt import probe
from tests.tui.conftest import SITE, START, run, seed_people, until
from tui.app import RollcallApp
from tui.cli import add_tui_arguments, run_tui
from tui.live import LiveState
from tui.views import AlertsView, AttendanceView, DevicesView, EventsView, PeopleView, PresenceView, ScreensView
from tui.widgets.modals import ConfirmScreen, FormScreen, HelpScreen, ImageScreen, ReportScreen

MakeApp = Callable[..., RollcallApp]


def _status(app: RollcallApp) -> str:
    return str(app.query_one("#statusbar", Static).render())


def _header(app: RollcallApp) -> str:
    return str(app.query_one("#topbar", Static).render())


def _text(app: RollcallApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def _png(width: int = 64, height: int = 36, shade: int = 90) -> bytes:
    image = PILImage.new("RGB", (width, height), (shade, 120, 200))
    for x in range(0, width, 8):
        for y in range(height):
            image.putpixel((x, y), (250, 250, 250))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _face_jpeg(faces_dir: Path) -> bytes:
    image = PILImage.open(faces_dir / "Barack_Obama" / "obama.jpg").convert("RGB").resize((112, 112))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def test_every_binding_switches_to_its_screen_and_help_lists_every_binding(hub: HubService, make_app: MakeApp) -> None:
    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            for key, name in (
                ("a", "alerts"),
                ("t", "attendance"),
                ("u", "people"),
                ("d", "devices"),
                ("s", "screens"),
                ("e", "events"),
                ("p", "presence"),
            ):
                await pilot.press(key)
                assert app.current == name and app.query_one(ContentSwitcher).current == name
                assert name.capitalize() in _header(app)
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            text = _text(app, "#help-text")
            for word in ("Presence", "Acknowledge", "Resolve", "Prev day", "Export CSV", "New person", "Enrol at door"):
                assert word in text
            for word in ("Remove", "Open large", "Message", "Lock", "Search", "Quit", "Del", "[", "]", "?"):
                assert word in text
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)
            await pilot.press("q")
            await pilot.pause(0.1)
        assert not app.is_running

    run(scenario)


def test_presence_board_shows_in_and_out_with_counts_and_search_and_filter(
    hub: HubService, clock: Clock, make_app: MakeApp
) -> None:
    ids = seed_people(hub, clock)

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            view = app.query_one(PresenceView)
            await until(pilot, lambda: len(view.sync.rows) == 3, what="three people on the board")
            rows = view.sync.rows
            assert rows[ids["Ana"]][2] == "IN" and rows[ids["Ana"]][4] == "door-1"
            assert rows[ids["Ben"]][2] == "OUT" and rows[ids["Ben"]][4] == "door-2"
            assert rows[ids["Cleo"]][2] == "UNKNOWN"
            assert rows[ids["Ana"]][3] == "09:10"  # 08:10 UTC, shown in Berlin time
            assert "IN 1  OUT 2" in _header(app)
            await pilot.press("slash")
            await pilot.press("b", "e")
            await until(pilot, lambda: set(view.sync.rows) == {ids["Ben"]}, what="search to find Ben")
            await pilot.press("escape")
            await until(pilot, lambda: len(view.sync.rows) == 3, what="search cleared")
            await pilot.press("f")
            assert set(view.sync.rows) == {ids["Ana"]} and view.filter == "in"
            await pilot.press("f")
            assert set(view.sync.rows) == {ids["Ben"]}
            await pilot.press("f", "f")
            assert len(view.sync.rows) == 3
            # a new sighting arrives through the hub: the board follows live
            feed(hub, make_event(device="door-1", seq=3, at=clock() - timedelta(minutes=1), person_id=ids["Cleo"]))
            await until(pilot, lambda: view.sync.rows[ids["Cleo"]][2] == "IN", what="Cleo in")
            assert "IN 2  OUT 1" in _header(app)
            assert view.sync.full_rebuilds == 0

    run(scenario)


def test_alerts_show_the_open_alert_with_its_snapshot_and_k_and_r_change_it_in_the_hub(
    hub: HubService, clock: Clock, make_app: MakeApp, faces_dir: Path
) -> None:
    faces = [
        make_event(device="door-1", seq=seq, at=clock() - timedelta(seconds=200 - 20 * seq)) for seq in range(1, 10)
    ]
    last = make_event(device="door-1", seq=10, at=clock(), has_snapshot=True)
    crop = wire.Snapshot(
        event_id=last.event_id,
        device="door-1",
        at=last.at,
        content_type="image/jpeg",
        width=112,
        height=112,
        data=_face_jpeg(faces_dir),
    )
    feed(hub, *faces, last)
    feed(hub, crop)
    (alert,) = hub.alerting.list("open")

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("a")
            view = app.query_one(AlertsView)
            await until(pilot, lambda: alert.alert_id in view.sync.rows, what="the alert listed")
            assert view.sync.rows[alert.alert_id][:3] == ("OPEN", "WARN", "unknown_face")
            assert "OPEN ALERTS 1" in _header(app)
            await until(pilot, lambda: view.snapshot is not None, what="the alert's snapshot")
            assert view.snapshot_event == last.event_id
            assert "unknown_face" in _text(app, "#alert-text")
            await pilot.press("enter")
            assert isinstance(app.screen, ImageScreen) and app.screen.picture is not None
            await pilot.press("escape")
            await pilot.press("k")
            await until(pilot, lambda: hub.alerting.book.get(alert.alert_id).state == "acknowledged")
            assert hub.alerting.book.get(alert.alert_id).acknowledged_by == "tui-test"
            await until(pilot, lambda: view.sync.rows[alert.alert_id][0] == "ACK", what="ACK shown")
            await pilot.press("r")
            await until(pilot, lambda: hub.alerting.book.get(alert.alert_id).state == "resolved")
            await until(pilot, lambda: view.sync.rows[alert.alert_id][0] == "RESOLVED", what="RESOLVED shown")
            assert "OPEN ALERTS 0" in _header(app)

    run(scenario)


def test_attendance_shows_the_day_pages_days_and_exports_a_csv_that_matches_the_hub(
    hub: HubService, clock: Clock, make_app: MakeApp, tmp_path: Path
) -> None:
    ids = seed_people(hub, clock)
    day = date(2026, 11, 23)

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("t")
            view = app.query_one(AttendanceView)
            await until(pilot, lambda: set(view.sync.rows) == {ids["Ana"], ids["Ben"]}, what="the day's rows")
            assert view.sync.rows[ids["Ana"]][1] == "09:10"
            assert view.sync.rows[ids["Ben"]][2] == "09:40"
            await pilot.press("x")
            path = tmp_path / "exports" / "attendance-2026-11-23.csv"
            assert path.is_file() and str(path) in str(app.query_one("#attendance-day", Static).render())
            with path.open(encoding="utf-8") as handle:
                exported = list(csv.DictReader(handle))
            stored = {row.person_id: row for row in hub.store.attendance(day)}
            assert {row["person_id"] for row in exported} == set(stored) == {ids["Ana"], ids["Ben"]}
            for row in exported:
                first_in = stored[row["person_id"]].first_in
                assert first_in is not None and row["date"] == "2026-11-23"
                assert row["first_in"].startswith(first_in.strftime("%Y-%m-%dT%H:%M"))
            await pilot.press("left_square_bracket")
            await until(pilot, lambda: view.loaded_day == day - timedelta(days=1), what="the day before")
            assert view.sync.rows == {}
            await pilot.press("right_square_bracket")
            await until(pilot, lambda: len(view.sync.rows) == 2, what="back to the day")
            await pilot.press("o")
            assert isinstance(app.screen, FormScreen)
            app.screen.query_one("#field-date", Input).value = "2026-11-20"
            await pilot.press("enter")
            await until(pilot, lambda: view.loaded_day == date(2026, 11, 20), what="the picked day")

    run(scenario)


def test_people_enrol_from_photos_with_reasons_enrol_at_a_door_and_remove_with_confirmation(
    broker: TestBroker, hub: HubService, make_app: MakeApp, faces_dir: Path
) -> None:
    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("u")
            view = app.query_one(PeopleView)
            await until(pilot, lambda: view.loaded, what="the people list")
            await pilot.press("n")
            assert isinstance(app.screen, FormScreen)
            app.screen.query_one("#field-name", Input).value = "Barack Obama"
            await pilot.press("enter")
            paths = f"{faces_dir / 'Barack_Obama'} '{faces_dir / '_groups' / 'insightface_t1.jpg'}'"
            app.screen.query_one("#field-paths", Input).value = paths
            await pilot.press("enter")
            await until(
                pilot,
                lambda: isinstance(app.screen, ReportScreen) and bool(app.screen.query("#report-text")),
                timeout=60,
                what="the enrolment report",
            )
            report = _text(app, "#report-text")
            assert "REFUSED" in report and "faces" in report and "OK" in report
            (person,) = hub.store.list_people()
            assert hub.store.template_counts(hub.model_id)[person.id] >= 3
            await pilot.press("escape")
            await until(pilot, lambda: person.id in view.sync.rows, what="the new person listed")
            with probe(broker, SITE.device_command("door-1")) as commands:
                await pilot.press("g")
                assert isinstance(app.screen, FormScreen)
                app.screen.query_one("#field-device", Input).value = "door-1"
                app.screen.query_one("#field-count", Input).value = "3"
                await pilot.press("ctrl+s")
                await until(pilot, lambda: bool(commands.messages), what="the capture command at the door")
            _, command = wire.decode(commands.messages[0].topic, commands.messages[0].payload)
            assert isinstance(command, wire.DeviceCommand)
            assert command.action == "enrol_capture" and command.person_id == person.id and command.count == 3
            await pilot.press("delete")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
            assert [p.id for p in hub.store.list_people()] == [person.id], "no is no"
            await pilot.press("delete")
            await pilot.press("y")
            await until(pilot, lambda: hub.store.list_people() == [], what="the person erased")
            erased = hub.store.get_person(person.id)
            assert erased is not None and erased.erased_at is not None and not erased.name
            await until(pilot, lambda: view.sync.rows == {}, what="the list without them")

    run(scenario)


def test_devices_screen_shows_a_device_after_its_health_message(
    hub: HubService, make_app: MakeApp, publisher: MqttLink, clock: Clock
) -> None:
    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("d")
            view = app.query_one(DevicesView)
            publisher.publish(
                SITE.device_status("door-1"), wire.Status(client="door-1", state="online", at=clock()), retain=True
            )
            health = wire.Health(
                device="door-1",
                at=clock() - timedelta(seconds=3),
                uptime_s=100.0,
                fps=14.8,
                cpu_percent=30.0,
                temperature_c=58.2,
                outbox_depth=3,
                oldest_unacked_s=4.2,
                gallery_version=12,
            )
            publisher.publish(SITE.device_health("door-1"), health, qos=0)
            row = ("door-1", "-", "entrance", "ONLINE", "3s ago", "14.8", "3", "4s", "12", "58.2")  # role: [[cameras]]
            await until(pilot, lambda: view.sync.rows.get("door-1") == row, what=f"door-1 shown as {row}")

    run(scenario)


def test_screens_are_empty_with_a_hint_then_show_a_workstation_open_it_message_and_lock_it(
    broker: TestBroker, hub: HubService, make_app: MakeApp, publisher: MqttLink, clock: Clock
) -> None:
    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("s")
            view = app.query_one(ScreensView)
            assert "No workstations yet" in str(app.query_one("#screens-hint", Static).render())
            await pilot.press("enter")  # nothing selected: a hint, no crash
            publisher.publish(SITE.agent_status("lab-pc-07"), wire.Status(client="lab-pc-07", state="online"))
            thumbnail = wire.Screen(
                agent="lab-pc-07",
                at=clock(),
                content_type="image/png",
                width=64,
                height=36,
                changed_fraction=0.2,
                data=_png(),
            )
            publisher.publish(SITE.agent_thumbnail("lab-pc-07"), thumbnail, qos=0, retain=True)
            activity = wire.Activity(
                event_id=str(ULID()),
                agent="lab-pc-07",
                seq=1,
                at=clock(),
                intervals=[wire.ActivityInterval(state="active", start=clock() - timedelta(minutes=1), end=clock())],
                window=wire.WindowInfo(title="results.ipynb", app="firefox"),
            )
            publisher.publish(SITE.agent_activity("lab-pc-07"), activity)
            await until(pilot, lambda: "lab-pc-07" in view.cards, what="the workstation card")
            card = view.cards["lab-pc-07"]
            await until(
                pilot,
                lambda: card.picture is not None and "ACTIVE" in str(card.query_one(".card-title").render()),
                what="card drawn",
            )
            assert "results.ipynb (firefox)" in str(card.query_one(".card-window", Static).render())
            await until(pilot, lambda: app.focused is card, what="the card focused")
            await pilot.press("enter")
            assert isinstance(app.screen, ImageScreen) and app.screen.picture is not None
            await pilot.press("escape")
            with probe(broker, SITE.agent_command("lab-pc-07")) as commands:
                await pilot.press("m")
                assert isinstance(app.screen, FormScreen)
                app.screen.query_one("#field-text", Input).value = "Please save your work"
                await pilot.press("enter")
                await pilot.press("l")
                assert isinstance(app.screen, ConfirmScreen)
                await pilot.press("y")
                await until(pilot, lambda: len(commands.messages) == 2, what="two agent commands")
            sent = [wire.decode(m.topic, m.payload)[1] for m in commands.messages]
            assert [(c.action, c.text, c.issued_by) for c in sent if isinstance(c, wire.AgentCommand)] == [
                ("message", "Please save your work", "tui-test"),
                ("lock", None, "tui-test"),
            ]

    run(scenario)


def test_events_screen_shows_new_events_live(
    hub: HubService, clock: Clock, make_app: MakeApp, publisher: MqttLink
) -> None:
    ids = seed_people(hub, clock)

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("e")
            view = app.query_one(EventsView)
            await until(pilot, lambda: len(view.sync.rows) == 3, what="the seeded events")
            fresh = make_event(device="door-1", seq=50, at=clock(), person_id=ids["Cleo"], has_snapshot=False)
            publisher.publish(SITE.device_event("door-1"), fresh)
            await until(pilot, lambda: fresh.event_id in view.sync.rows, what="the live event")
            assert view.sync.rows[fresh.event_id][1:4] == ("door-1", "SEEN", "Cleo")
            stranger = make_event(device="door-2", seq=51, at=clock())
            publisher.publish(SITE.device_event("door-2"), stranger)
            await until(pilot, lambda: stranger.event_id in view.sync.rows, what="the stranger")
            assert view.sync.rows[stranger.event_id][3] == "UNKNOWN FACE"
            assert view.sync.full_rebuilds == 0

    run(scenario)


def test_a_broker_outage_shows_and_the_tui_recovers_by_itself(
    broker: TestBroker, hub: HubService, clock: Clock, make_app: MakeApp
) -> None:
    seed_people(hub, clock)

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: _status(app) == " status: ok", what="ok")
            broker.stop()
            await until(pilot, lambda: "broker unreachable" in _status(app), what="the outage shown")
            await pilot.press("a")  # still answers keys
            assert app.current == "alerts"
            broker.start()
            await until(pilot, lambda: _status(app) == " status: ok", timeout=20, what="recovery")
            await pilot.press("p")
            await until(pilot, lambda: len(app.query_one(PresenceView).sync.rows) == 3, what="the board")

    run(scenario)


def test_a_silent_hub_shows_hub_not_answering_and_the_ui_keeps_responding(hub: HubService, make_app: MakeApp) -> None:
    async def scenario() -> None:
        app = make_app(poll_s=30.0)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.last_reply_at is not None, what="a first reply")
            hub.stop()
            await pilot.press("u")
            await until(pilot, lambda: "hub not answering" in _status(app), timeout=10, what="the hub's silence")
            assert "last reply" in _status(app)
            await pilot.press("p")
            assert app.current == "presence"
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)

    run(scenario)


def test_two_thousand_people_and_a_hundred_workstations_update_in_place(
    hub: HubService, live: LiveState, clock: Clock, make_app: MakeApp, publisher: MqttLink
) -> None:
    board_ref = wire.TopicRef("rollcall", "hq", "hub", None, "presence")

    def board(changed: int | None = None) -> wire.Presence:
        people = [
            wire.PresenceEntry(
                person_id=f"p-{n:04d}",
                name=f"Person {n:04d}",
                state="in" if (n % 3 == 0) != (n == changed) else "out",
                since=clock() - timedelta(minutes=n % 600),
                door="door-1" if n % 2 else "door-2",
            )
            for n in range(2000)
        ]
        return wire.Presence(at=clock(), people=people)

    for n in range(100):
        agent = f"ws-{n:03d}"
        thumbnail = wire.Screen(
            agent=agent,
            at=clock(),
            content_type="image/png",
            width=64,
            height=36,
            changed_fraction=0.1,
            data=_png(shade=n),
        )
        publisher.publish(SITE.agent_thumbnail(agent), thumbnail, qos=1, retain=True)

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(160, 48)) as pilot:
            live.apply(board_ref, board())
            view = app.query_one(PresenceView)
            await until(pilot, lambda: len(view.sync.rows) == 2000, what="2,000 rows")
            assert view.sync.full_rebuilds == 0 and view.sync.rows_added == 2000
            await pilot.press("f")
            assert view.filter == "in" and len(view.sync.rows) == 667
            await pilot.press("f", "f", "f")
            assert len(view.sync.rows) == 2000
            added = view.sync.rows_added
            before = view.sync.cell_updates
            live.apply(board_ref, board(changed=1))
            await until(pilot, lambda: view.sync.rows["p-0001"][2] == "IN", what="one change")
            assert view.sync.cell_updates - before <= 2, "only the changed cells are touched"
            assert view.sync.rows_added == added and view.sync.full_rebuilds == 0
            await until(pilot, lambda: len(live.workstations()) == 100, what="100 thumbnails through the broker")
            await pilot.press("s")
            screens = app.query_one(ScreensView)
            await until(pilot, lambda: len(screens.cards) == 100, what="100 cards")
            await until(pilot, lambda: isinstance(app.focused, type(screens.cards["ws-000"])), what="a card focused")
            await pilot.press("right")
            assert app.focused is screens.cards["ws-001"]
            await pilot.press("p")
            assert app.current == "presence"

    run(scenario)


def test_live_state_counts_bad_messages_and_never_crashes(live: LiveState) -> None:
    topics = SITE
    live.handle_message(Received(topics.hub_presence(), b"{not json", 1, True))
    live.handle_message(Received(topics.device_event("door-1"), b'{"v": 1}', 1, False))
    live.handle_message(Received("rollcall/hq/device/door-1/bogus", b"{}", 1, False))
    assert live.bad_messages == 3 and live.presence_refused
    oversized: dict[str, Any] = {"v": 1, "at": START.isoformat(), "people": [{"x": "y" * 100}] * 25_000}  # > 2 MiB
    live.handle_message(Received(topics.hub_presence(), json.dumps(oversized).encode(), 1, True))
    assert live.bad_messages == 4 and live.last_bad is not None and "limit" in live.last_bad


def test_the_tui_command_refuses_a_bad_config_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_tui_arguments(parser)
    assert parser.parse_args([]).config is None
    bad = tmp_path / "tui.toml"
    bad.write_text('[tui]\nmax_redraw_hz = 0\nbogus = "x"\n')
    assert run_tui(parser.parse_args(["--config", str(bad)])) == 2
    err = capsys.readouterr().err
    assert "tui.max_redraw_hz" in err and "bogus" in err
    assert run_tui(parser.parse_args(["--config", str(tmp_path / "missing.toml")])) == 2
