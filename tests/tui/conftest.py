"""Fixtures for the TUI: a real broker, a real hub in this process, and the TUI's own live link and hub client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from textual.pilot import Pilot

from edge.protocol import wire
from edge.protocol.hub_client import HubClient
from edge.protocol.mqtt import MqttLink
from edge.recognition.engine import build_engine
from edge.recognition.faces import FaceEngine
from hub.enrol import Enroller
from hub.service import HubService
from tests.helpers.brokers import TestBroker
from tests.helpers.factories import make_event
from tests.helpers.hub import Clock, HubStarter, feed
from tests.helpers.mqtt import settings_for
from tui.app import RollcallApp
from tui.live import LiveState

SITE = wire.Topics("hq")
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
"""A Monday, 10:00 in Berlin: the hub's and the TUI's clock in these tests."""

T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/tui drives the Textual app: mark it so."""
    for item in items:
        if "tests/tui/" in str(item.path):
            item.add_marker(pytest.mark.tui)
            # textual-image 0.12 calls Pillow's deprecated getdata(); not ours to fix
            item.add_marker(pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning"))


@pytest.fixture(scope="session")
def tui_engine(model_dir: Path) -> FaceEngine:
    """The default face pack, built once, for enrolment through the hub."""
    return build_engine(model_dir=model_dir)


@pytest.fixture
def clock() -> Clock:
    """The shared hand-set clock."""
    return Clock(START)


@pytest.fixture
def hub(start_hub: HubStarter, tui_engine: FaceEngine, clock: Clock, faces_dir: Path) -> HubService:
    """A running hub in this process with an entrance (door-1) and an exit (door-2) camera, enrolling from faces_dir."""
    return start_hub(
        """
[schedule]
mode = "on"

[[cameras]]
device = "door-1"
role = "entrance"

[[cameras]]
device = "door-2"
role = "exit"
""",
        clock=clock,
        engine=tui_engine,
        enrolment=Enroller(tui_engine, tui_engine.embedder.model_id),
        import_dir=faces_dir,
    )


@pytest.fixture
def live(broker: TestBroker, clock: Clock) -> Iterator[LiveState]:
    """The TUI's live link to the broker."""
    state = LiveState(settings_for(broker), SITE, "tui-test-live", clock=clock)
    state.start()
    assert state.link is not None and state.link.wait_subscribed(10)
    try:
        yield state
    finally:
        state.stop()


@pytest.fixture
def client(broker: TestBroker) -> Iterator[HubClient]:
    """The TUI's request/reply client."""
    hub_client = HubClient(settings_for(broker), SITE, "tui-test")
    hub_client.start()
    try:
        yield hub_client
    finally:
        hub_client.close()


@pytest.fixture
def publisher(broker: TestBroker) -> Iterator[MqttLink]:
    """A plain link that plays door devices and workstation agents."""
    link = MqttLink(settings_for(broker), client_id="tui-test-publisher", clean_session=True)
    link.start()
    assert link.wait_connected(10)
    try:
        yield link
    finally:
        link.stop()


@pytest.fixture
def make_app(live: LiveState, client: HubClient, clock: Clock, tmp_path: Path) -> Callable[..., RollcallApp]:
    """Builds the app on the real live state and hub client (short timeouts so failures show quickly)."""

    def make(**overrides: Any) -> RollcallApp:
        options: dict[str, Any] = {
            "site": "hq",
            "timezone": "Europe/Berlin",
            "clock": clock,
            "request_timeout_s": 3.0,
            "poll_s": 1.0,
            "export_dir": tmp_path / "exports",
            "issued_by": "tui:test",
        }
        options.update(overrides)
        return RollcallApp(live, client, **options)

    return make


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async Pilot scenario from a plain test (no asyncio plugin needed)."""
    return asyncio.run(scenario())


async def until(pilot: Pilot[Any], predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Let the app run until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            notes = [note.message for note in pilot.app._notifications]
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}; notes: {notes}")
        await pilot.pause(0.05)


def seed_people(hub: HubService, clock: Clock) -> dict[str, str]:
    """Ana (in through door-1), Ben (in, then out through door-2), Cleo (never seen): name → person id."""
    with hub.store_lock:
        ids = {
            name: hub.store.add_person(name, clock(), person_id=f"p-{name.lower()}") for name in ("Ana", "Ben", "Cleo")
        }
    hub.mark_people_changed()
    at = clock() - timedelta(minutes=50)
    feed(
        hub,
        make_event(device="door-1", seq=1, at=at, person_id=ids["Ana"]),
        make_event(device="door-1", seq=2, at=at + timedelta(minutes=5), person_id=ids["Ben"]),
        make_event(device="door-2", seq=1, at=at + timedelta(minutes=30), person_id=ids["Ben"]),
    )
    return ids
