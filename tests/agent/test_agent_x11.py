"""The workstation agent against a real X server (Xvfb), real Mosquitto and the acking receiver."""

from __future__ import annotations

import io
import itertools
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from ulid import ULID

from edge.agent.activity import XActivity
from edge.agent.config import AgentConfig
from edge.agent.service import AgentService
from edge.protocol import wire
from edge.protocol.config import load_config
from rollcall.tools.receiver import AckingReceiver
from tests.agent.conftest import AGENT, SITE, XServer, wait_until, write_agent_config, x_window, xdotool
from tests.conftest import REPO_ROOT
from tests.helpers.brokers import TestBroker
from tests.helpers.mqtt import probe, settings_for

TOPICS = wire.Topics(SITE)


@pytest.fixture
def receiver(broker: TestBroker, tmp_path: Path) -> Iterator[AckingReceiver]:
    """The hub stand-in: commits agent activity and acks it on agent/<id>/ack."""
    instance = AckingReceiver(settings_for(broker), tmp_path / "receiver.db", site=SITE)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def start_agent(tmp_path: Path, broker: TestBroker, **options: object) -> AgentService:
    config = load_config(AgentConfig, write_agent_config(tmp_path, broker, **options), "agent")  # type: ignore[arg-type]
    service = AgentService(config, software="rollcall-test", sample_s=0.2)
    service.start()
    assert service.link.wait_subscribed(10)
    return service


def command(action: str, **fields: object) -> bytes:
    payload = wire.AgentCommand.model_validate(
        {"command_id": str(ULID()), "at": wire.now_utc(), "action": action, "issued_by": "supervisor-anna", **fields}
    )
    return wire.encode(payload)


def send(broker: TestBroker, payload: bytes) -> None:
    from edge.protocol.mqtt import MqttLink

    link = MqttLink(settings_for(broker), client_id="supervisor", clean_session=True)
    link.start()
    assert link.wait_connected(10)
    link.publish(TOPICS.agent_command(AGENT), payload, qos=1).wait_for_publish(5)
    link.stop()


def window_count(name: str) -> int:
    result = xdotool("search", "--name", f"^{name}$")
    return len(result.stdout.split())


def test_thumbnail_shows_a_drawn_window_and_a_still_screen_publishes_nothing(
    xvfb: XServer, broker: TestBroker, tmp_path: Path
) -> None:
    topic = TOPICS.agent_thumbnail(AGENT)
    with probe(broker, topic) as seen:
        service = start_agent(tmp_path, broker, files=False)
        try:
            assert seen.wait_for(lambda m: len(m) >= 1, 10), "no first thumbnail"
            assert wait_until(lambda: window_count("rollcall") >= 1, 10), "no start notice"
            conn, _window = x_window(xvfb.display, pixel=0xFF0000)  # red, 400x300 at (100, 100)

            def red_in(message_payload: bytes) -> bool:
                screen = wire.decode(topic, message_payload)[1]
                assert isinstance(screen, wire.Screen) and not screen.full
                image = Image.open(io.BytesIO(screen.data)).convert("RGB")
                scale = image.width / 1024
                r, g, b = image.getpixel((int(300 * scale), int(250 * scale)))  # type: ignore[misc]
                outside = image.getpixel((int(50 * scale), int(50 * scale)))
                return r > 200 and g < 60 and b < 60 and sum(outside) < 40  # type: ignore[arg-type]

            assert seen.wait_for(lambda m: len(m) >= 2 and red_in(m[-1].payload), 10), "window not in thumbnail"
            last = wire.decode(topic, seen.on(topic)[-1].payload)[1]
            assert isinstance(last, wire.Screen)
            assert (last.width, last.height, last.content_type) == (320, 240, "image/jpeg")
            assert last.changed_fraction > 0.1
            count = len(seen.on(topic))
            time.sleep(3 * service.config.capture.min_interval_s + 0.5)  # nothing moves: nothing new
            assert len(seen.on(topic)) == count
            conn.close()
        finally:
            service.stop()
    with probe(broker, topic, client_id="late") as late:  # retained: a late viewer gets the latest at once
        assert late.wait_for(lambda m: len(m) == 1, 5)
        assert late.messages[0].retain and red_in(late.messages[0].payload)


def test_idle_grows_without_input_and_resets_after_xdotool(xvfb: XServer) -> None:
    activity = XActivity()
    try:
        xdotool("mousemove", "5", "5")
        first = activity.idle_seconds()
        assert first is not None
        time.sleep(1.3)
        later = activity.idle_seconds()
        assert later is not None and later >= first + 1.0
        assert xdotool("mousemove", "200", "200").returncode == 0
        reset = activity.idle_seconds()
        assert reset is not None and reset < 0.5
    finally:
        activity.close()


def test_activity_reaches_the_receiver_with_window_files_and_idle(
    xvfb: XServer, broker: TestBroker, receiver: AckingReceiver, tmp_path: Path
) -> None:
    conn, window = x_window(xvfb.display, title="Bericht – rollcall test", wm_class=("gedit", "Gedit"))
    assert xdotool("windowfocus", "--sync", str(window.id)).returncode == 0
    xdotool("mousemove", "10", "10")
    service = start_agent(tmp_path, broker, thumbnails=False, idle_after_s=1.0)
    try:
        watched = tmp_path / "watched"
        (watched / "sub").mkdir()
        (watched / "sub" / "report.txt").write_text("results")
        (watched / "scratch.tmp").write_text("ignored")

        def stored() -> list[wire.Activity]:
            return receiver.stored_activity(AGENT)

        def has_file() -> bool:
            return any(f.path.endswith("sub/report.txt") for a in stored() for f in a.files)

        assert wait_until(has_file, 10), "file change not delivered"
        changes = [f for a in stored() for f in a.files]
        assert not any(f.path.endswith(".tmp") for f in changes)
        assert {f.change for f in changes if f.path.endswith("report.txt")} >= {"created"}
        # No input for more than idle_after_s: an idle interval; then input: active again.
        assert wait_until(lambda: any(i.state == "idle" for a in stored() for i in a.intervals), 10)
        xdotool("mousemove", "300", "300")
        idle_end = max(i.end for a in stored() for i in a.intervals if i.state == "idle")
        assert wait_until(
            lambda: any(i.state == "active" and i.start >= idle_end for a in stored() for i in a.intervals), 10
        )
        batches = stored()
        assert batches[0].session == "start" and batches[0].user
        assert [b.seq for b in batches] == sorted(b.seq for b in batches)
        windows = [a.window for a in batches if a.window is not None]
        assert windows and windows[-1].title == "Bericht – rollcall test" and windows[-1].app == "Gedit"
        intervals = sorted((i for a in batches for i in a.intervals), key=lambda i: i.start)
        for before, after in itertools.pairwise(intervals):
            assert before.end <= after.start  # merged intervals never overlap
        assert wait_until(lambda: service.outbox.stats().depth <= 1, 5)  # acked by the receiver, deleted
    finally:
        service.stop()
        conn.close()


def test_message_lock_and_screenshot_commands(xvfb: XServer, broker: TestBroker, tmp_path: Path) -> None:
    with probe(broker, TOPICS.agent_screenshot(AGENT)) as shots:
        service = start_agent(tmp_path, broker, thumbnails=False, files=False)
        try:
            # The transparency notice at start: no notification daemon here, so the fallback window.
            assert wait_until(lambda: window_count("rollcall") >= 1, 10), "no start notice"
            assert "collecting" in service.desktop.shown[0][1]
            send(broker, command("message", text="Please save your work"))
            assert wait_until(lambda: window_count("rollcall") >= 2, 10), "message window not shown"
            assert ("window", "Message from supervisor-anna: Please save your work") in service.desktop.shown

            marks = tmp_path / "marks"
            send(broker, command("lock", unlock_after_s=1))
            assert wait_until(lambda: (marks / "locked").exists(), 10), "lock command did not run"
            assert wait_until(lambda: service.merger.state == "locked", 5)
            assert wait_until(lambda: (marks / "unlocked").exists(), 5), "unlock timer did not run"
            assert wait_until(lambda: service.merger.state == "active", 5)

            send(broker, command("screenshot"))
            assert shots.wait_for(lambda m: len(m) == 1, 10), "no screenshot"
            shot = wire.decode(TOPICS.agent_screenshot(AGENT), shots.messages[0].payload)[1]
            assert isinstance(shot, wire.Screen) and shot.full and (shot.width, shot.height) == (1024, 768)
            assert any("full screenshot" in text for _, text in service.desktop.shown)
        finally:
            service.stop()


def test_offline_activity_is_kept_and_delivered_after_the_broker_returns(
    xvfb: XServer, broker: TestBroker, receiver: AckingReceiver, tmp_path: Path
) -> None:
    service = start_agent(tmp_path, broker, thumbnails=False)
    try:
        assert wait_until(lambda: len(receiver.stored_activity(AGENT)) >= 1, 10)
        broker.stop()
        assert wait_until(lambda: not service.link.connected, 10)
        (tmp_path / "watched" / "while-offline.txt").write_text("x")
        assert wait_until(
            lambda: any(f.path.endswith("while-offline.txt") for m in _outbox_activity(service) for f in m.files), 10
        )
        broker.start()
        assert wait_until(
            lambda: any(f.path.endswith("while-offline.txt") for a in receiver.stored_activity(AGENT) for f in a.files),
            20,
        ), "activity kept offline was not delivered"
    finally:
        service.stop()


def _outbox_activity(service: AgentService) -> list[wire.Activity]:
    out = []
    for message in service.outbox.due(1000, 0.0):
        payload = wire.decode(message.topic, message.payload)[1]
        assert isinstance(payload, wire.Activity)
        out.append(payload)
    return out


def test_sigterm_ends_the_session_and_says_stopped(
    xvfb: XServer, broker: TestBroker, receiver: AckingReceiver, tmp_path: Path
) -> None:
    config = write_agent_config(tmp_path, broker, files=False)
    status_topic = TOPICS.agent_status(AGENT)
    with probe(broker, status_topic) as statuses:
        process = subprocess.Popen(
            [sys.executable, "-m", "edge.agent", "run", "--config", str(config)],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "agent.log").open("wb"),
        )
        try:

            def states() -> list[wire.Status]:
                out = []
                for message in statuses.on(status_topic):
                    payload = wire.decode(status_topic, message.payload)[1]
                    assert isinstance(payload, wire.Status)
                    out.append(payload)
                return out

            assert wait_until(lambda: any(s.state == "online" for s in states()), 15), (
                tmp_path / "agent.log"
            ).read_text()
            online = next(s for s in states() if s.state == "online")
            assert online.software is not None and "collecting: activity, screen thumbnails, window titles" in (
                online.software
            )
            assert wait_until(lambda: len(receiver.stored_activity(AGENT)) >= 2, 10)
            process.send_signal(signal.SIGTERM)
            assert process.wait(15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(5)
        assert wait_until(lambda: any(s.state == "stopped" for s in states()), 5)
    assert wait_until(lambda: any(a.session == "end" for a in receiver.stored_activity(AGENT)), 5)
    sessions = [a.session for a in receiver.stored_activity(AGENT) if a.session]
    assert sessions == ["start", "end"]


def test_wayland_without_x_says_what_is_unavailable(
    broker: TestBroker, receiver: AckingReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    topic = TOPICS.agent_thumbnail(AGENT)
    with probe(broker, topic) as thumbnails:
        service = start_agent(tmp_path, broker)
        try:
            (tmp_path / "watched" / "still-logged.txt").write_text("x")

            def batches() -> list[wire.Activity]:
                return receiver.stored_activity(AGENT)

            assert wait_until(lambda: any(a.files for a in batches()), 10), "file changes stop on Wayland too"
            assert wait_until(lambda: any(a.window is not None for a in batches()), 5)
            window = next(a.window for a in batches() if a.window is not None)
            assert window == wire.WindowInfo(title=None, app=None)
            assert not any(a.intervals for a in batches())  # no idle time, no screen: no intervals claimed
            problems = " ".join(service.state.problems)
            assert "Wayland" in problems and "thumbnails" in problems
            assert service.desktop.shown and service.desktop.shown[0][0] == "none"  # logged at ERROR instead
        finally:
            service.stop()
        assert thumbnails.messages == []
