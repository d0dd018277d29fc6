"""Snapshots of every screen at 80×24 and 160×48, from fixed data and a frozen clock (no faces, no photos)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import JsonValue
from textual.pilot import Pilot
from textual.widgets import DataTable

from edge.protocol import wire
from tests.helpers.factories import make_event
from tests.tui.conftest import START
from tui.app import RollcallApp
from tui.live import LiveState

SITE = wire.Topics("hq")
NAMES = ["Ana Horvat", "Marko Kovač", "Iva Novak", "Luka Babić", "Petra Jurić", "Ivan Knežević", "Maja Marić"]


class CannedHub:
    """Answers the TUI's requests with fixed data."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def call(self, method: str, params: dict[str, JsonValue] | None = None, timeout: float = 10.0) -> Any:
        self.calls.append(method)
        if method == "people.list":
            return [
                {"person_id": f"p-{n:04d}", "name": name, "templates": 3 + n % 4, "created_at": "2026-11-02T08:00:00Z"}
                for n, name in enumerate(NAMES)
            ]
        if method == "attendance.day":
            return [
                {
                    "person_id": f"p-{n:04d}",
                    "name": name,
                    "first_in": f"2026-11-23T0{6 + n % 3}:{10 + n:02d}:00Z",
                    "last_out": None if n % 2 else f"2026-11-23T08:{30 + n:02d}:00Z",
                    "hours": round(1.5 + n * 0.25, 2),
                    "status": "open" if n % 2 else "provisional",
                    "first_in_event": None,
                    "last_out_event": None,
                }
                for n, name in enumerate(NAMES[:5])
            ]
        if method == "site.info":
            return {"site": "hq", "timezone": "Europe/Berlin", "day_starts_at": "04:00", "device_silent_after_min": 30}
        if method == "devices.list":  # door-3 retired, door-4 silent for two hours (the live state never heard it)
            return [
                {"device": "door-1", "name": "Front door", "role": "entrance", "status": "online", "retired_at": None},
                {"device": "door-2", "name": "Front door out", "role": "exit", "status": "online", "retired_at": None},
                {
                    "device": "door-3",
                    "name": None,
                    "role": "both",
                    "status": "offline",
                    "retired_at": "2026-11-20T08:00:00Z",
                },
                {
                    "device": "door-4",
                    "name": "Yard",
                    "role": "both",
                    "status": "online",
                    "last_seen": "2026-11-23T07:00:00Z",
                    "retired_at": None,
                    "silent": True,
                },
            ]
        if method in ("alerts.list", "events.recent", "presence.get"):
            return []
        return {}


def _ref(role: str, entity: str | None, leaf: str) -> wire.TopicRef:
    return wire.TopicRef(
        "rollcall", "hq", "hub" if role == "hub" else ("device" if role == "device" else "agent"), entity, leaf
    )


def fixed_state() -> LiveState:
    """A live state filled with a small fixed site."""
    live = LiveState(None, SITE, "tui-snap-live", clock=lambda: START)
    live.handle_connection(True)
    states = ["in", "out", "in", "unknown", "in", "out", "in"]
    people = [
        wire.PresenceEntry(
            person_id=f"p-{n:04d}",
            name=name,
            state=state,  # type: ignore[arg-type]
            since=None if state == "unknown" else START - timedelta(minutes=17 * (n + 1)),
            door=None if state == "unknown" else ("door-1" if n % 2 == 0 else "door-2"),
        )
        for n, (name, state) in enumerate(zip(NAMES, states, strict=True))
    ]
    live.apply(_ref("hub", None, "presence"), wire.Presence(at=START, people=people))
    for n, (rule, severity, state, subject) in enumerate(
        [
            ("unknown_face", "warning", "open", "door-1"),
            ("device_offline", "critical", "open", "door-3"),
            ("late_arrival", "info", "acknowledged", "Iva Novak"),
            ("backlog", "warning", "resolved", "door-2"),
        ]
    ):
        alert = wire.Alert(
            alert_id=f"01M7YHX300QFT5FP537V3XMS9{n}",
            rule=rule,
            severity=severity,  # type: ignore[arg-type]
            state=state,  # type: ignore[arg-type]
            subject=subject,
            message=f"{rule.replace('_', ' ')} at {subject}",
            first_at=START - timedelta(minutes=40 + n),
            last_at=START - timedelta(minutes=5 * n),
            count=n + 1,
            device=subject if subject.startswith("door") else None,
            acknowledged_by="tui:alice" if state == "acknowledged" else None,
        )
        live.apply(_ref("hub", None, "alert"), alert)
    for n in range(1, 4):
        device = f"door-{n}"
        live.apply(
            _ref("device", device, "status"),
            wire.Status(client=device, state="offline" if n == 3 else "online", at=START - timedelta(minutes=n)),
        )
        if n < 3:
            health = wire.Health(
                device=device,
                at=START - timedelta(seconds=2 * n),
                uptime_s=3600.0,
                fps=14.8 - n,
                cpu_percent=30.0,
                temperature_c=55.0 + n,
                outbox_depth=n - 1,
                oldest_unacked_s=None if n == 1 else 4.2,
                gallery_version=12,
            )
            live.apply(_ref("device", device, "health"), health)
    for seq in range(12):
        person = None if seq % 5 == 4 else f"p-{seq % 7:04d}"
        live.apply(
            _ref("device", "door-1", "event"),
            make_event(
                event_id=f"01M7YHSSVS0A533JN3YQJYX5{seq:02d}",
                device="door-1" if seq % 3 else "door-2",
                seq=seq,
                at=START - timedelta(minutes=60 - 4 * seq),
                type="left" if seq % 4 == 3 else "seen",
                person_id=person,
                score=0.7 if person else 0.25,
                margin=0.2,
            ),
        )
    for n in range(5):
        agent = f"lab-pc-{n:02d}"
        live.apply(_ref("agent", agent, "status"), wire.Status(client=agent, state="offline" if n == 4 else "online"))
        live.apply(
            _ref("agent", agent, "activity"),
            wire.Activity(
                event_id=f"01M7YK1WMC7G2VV3P09WNATC{n:02d}",
                agent=agent,
                seq=n,
                at=START,
                intervals=[
                    wire.ActivityInterval(
                        state="idle" if n % 2 else "active", start=START - timedelta(minutes=5), end=START
                    )
                ],
                window=wire.WindowInfo(title=f"report-{n}.ods", app="libreoffice"),
            ),
        )
    return live


def make_app(tmp_path: Path) -> RollcallApp:
    return RollcallApp(
        fixed_state(),
        CannedHub(),
        site="hq",
        timezone="Europe/Berlin",
        clock=lambda: START,
        poll_s=3600.0,
        export_dir=tmp_path,
    )


def settle(*keys: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, RollcallApp)
        await pilot.pause(0.2)
        for key in keys:
            await pilot.press(key)
        # Answers are applied by the 10 Hz redraw timer: wait until nothing is out or waiting to be drawn, then for
        # three more redraws, so a slow machine (CI) draws the same picture as a fast one.
        for _ in range(400):
            await pilot.pause(0.05)
            if app.settled:
                break
        ticks = app.ticks
        for _ in range(400):
            if app.ticks >= ticks + 3 and app.settled:
                break
            await pilot.pause(0.05)
        # Widgets finish their own layout (a table sizing its columns to new rows) on idle; on a loaded machine that
        # can trail the app's redraws (two renders alike with the columns still header-wide were seen under load), so
        # wait until no table has dimensions left to update (Textual's own flag), then until two renders 0.3 s apart
        # are the same picture.
        for _ in range(400):
            if not any(
                table._require_update_dimensions or table._updated_cells or table._new_rows
                for table in app.screen.query(DataTable)
            ):
                break
            await pilot.pause(0.05)
        previous = app.export_screenshot()
        for _ in range(50):
            await pilot.pause(0.3)
            current = app.export_screenshot()
            if current == previous:
                break
            previous = current

    return run_before


SCREENS = ["p", "a", "t", "u", "d", "s", "e"]


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("key", SCREENS)
def test_screen_snapshot(snap_compare: Any, tmp_path: Path, key: str, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=size, run_before=settle(key))


def test_help_snapshot(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24), run_before=settle("question_mark"))
