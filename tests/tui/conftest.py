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
from ulid import ULID

from edge.protocol import wire
from edge.protocol.config import load_config
from edge.protocol.hub_client import HubClient
from edge.protocol.mqtt import MqttLink, Received
from edge.recognition.engine import build_engine
from edge.recognition.faces import FaceEngine
from hub.config import HubConfig
from hub.enrol import Enroller
from hub.service import HubService
from hub.store import HubStore
from tests.helpers.brokers import TestBroker
from tests.helpers.mqtt import settings_for
from tests.integration.test_hub import hub_config
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


class Clock:
    """A hand-set clock shared by the hub and the TUI."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="session")
def tui_engine(model_dir: Path) -> FaceEngine:
    """The default face pack, built once, for enrolment through the hub."""
    return build_engine(model_dir=model_dir)


@pytest.fixture
def clock() -> Clock:
    """The shared hand-set clock."""
    return Clock(START)


@pytest.fixture
def hub(
    broker: TestBroker, tmp_path: Path, model_dir: Path, tui_engine: FaceEngine, clock: Clock
) -> Iterator[HubService]:
    """A running hub in this process with an entrance (door-1) and an exit (door-2) camera."""
    path = hub_config(tmp_path, broker, model_dir)
    path.write_text(
        path.read_text()
        + """
[schedule]
mode = "on"

[[cameras]]
device = "door-1"
role = "entrance"

[[cameras]]
device = "door-2"
role = "exit"
"""
    )
    config = load_config(HubConfig, path, "hub", {})
    store = HubStore.from_settings(config.hub)
    enroller = Enroller(tui_engine, store, tui_engine.embedder.model_id, clock)
    service = HubService(
        config,
        store,
        model_id=tui_engine.embedder.model_id,
        embedding_size=tui_engine.embedder.embedding_size,
        clock=clock,
        enrol_photos=enroller.enrol_photos,
        enrol_capture=enroller.embed_capture,
    )
    service.start()
    assert service.link.wait_subscribed(10)
    try:
        yield service
    finally:
        service.stop()
        store.close()


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


def event(
    device: str, seq: int, at: datetime, person: str | None, *, kind: str = "seen", snapshot: bool = False
) -> wire.Event:
    """A recognition event."""
    return wire.Event(
        event_id=str(ULID()),
        device=device,
        seq=seq,
        at=at,
        type="left" if kind == "left" else "seen",
        person_id=person,
        score=0.72 if person else 0.2,
        margin=0.2 if person else 0.02,
        track=seq,
        quality=0.8,
        has_snapshot=snapshot,
    )


def feed(hub: HubService, *payloads: wire.Event | wire.Snapshot | wire.Status | wire.Health) -> None:
    """Hand messages to the hub's writer path directly (as if they came from the devices)."""
    messages = []
    for payload in payloads:
        if isinstance(payload, wire.Event):
            topic = SITE.device_event(payload.device)
        elif isinstance(payload, wire.Snapshot):
            topic = SITE.device_snapshot(payload.device)
        elif isinstance(payload, wire.Status):
            topic = SITE.device_status(payload.client)
        else:
            topic = SITE.device_health(payload.device)
        messages.append((Received(topic, wire.encode(payload), 1, False), 0.0))
    hub.handle_batch(messages)


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
        event("door-1", 1, at, ids["Ana"]),
        event("door-1", 2, at + timedelta(minutes=5), ids["Ben"]),
        event("door-2", 1, at + timedelta(minutes=30), ids["Ben"]),
    )
    return ids
