"""Attendance after a burst: presence first, the days recomputed when no message waits, nothing lost in between.

The writer marks the (person, day) pairs of new events due in the transaction that stores the events and recomputes
them once no message waits. These tests drive a real hub on a real SQLite file (and a real Mosquitto where the
events travel over MQTT) and prove that a due day is never lost: not by a kill before its recompute, not by the
sign-off sweep, not by an API answer.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from edge.protocol import wire
from edge.protocol.config import load_config
from edge.protocol.mqtt import MqttLink, Received
from hub.config import HubConfig
from hub.service import HubService
from hub.store import HubStore
from tests.helpers.brokers import TestBroker
from tests.helpers.factories import make_event
from tests.helpers.hub import TEST_EMBEDDING_SIZE, TEST_MODEL_ID, Clock, HubStarter, hub_config
from tests.helpers.mqtt import settings_for

pytestmark = pytest.mark.integration

SITE = wire.Topics("hq")
MORNING = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday; the site runs on UTC with the 04:00 day start
DAY = date(2026, 3, 2)
DOORS = '[[cameras]]\ndevice = "door-in"\nrole = "entrance"\n\n[[cameras]]\ndevice = "door-out"\nrole = "exit"\n'


def _add_people(store: HubStore, count: int) -> list[str]:
    return [
        store.add_person(f"Person {i:03d}", MORNING - timedelta(days=3), person_id=f"p-{i:03d}") for i in range(count)
    ]


def _arrivals(
    people: list[str], start_seq: int = 1, device: str = "door-in", at: datetime = MORNING
) -> list[tuple[Received, float]]:
    """Each person seen at a door (the entrance unless told) once, a second apart, as the broker hands them over."""
    batch = []
    for i, person in enumerate(people):
        event = make_event(at=at + timedelta(seconds=i), device=device, seq=start_seq + i, person_id=person)
        batch.append((Received(SITE.device_event(device), wire.encode(event), 1, False), time.time()))
    return batch


def _wait(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.05)


def test_days_made_due_survive_a_hub_killed_before_their_recompute(
    broker: TestBroker, start_hub: HubStarter, tmp_path: Path, model_dir: Path
) -> None:
    clock = Clock(MORNING + timedelta(minutes=5))
    config = load_config(HubConfig, hub_config(tmp_path, broker, model_dir, extra=DOORS), "hub", {})
    store = HubStore.from_settings(config.hub)
    people = _add_people(store, 40)
    # The writer's own path (store, ack, mark due), and then the process dies: no recompute, no clean stop.
    doomed = HubService(config, store, model_id=TEST_MODEL_ID, embedding_size=TEST_EMBEDDING_SIZE, clock=clock)
    doomed.ingest.handle_batch(_arrivals(people))
    assert store.attendance(DAY) == [], "the burst's days were recomputed at once: nothing was deferred"
    assert len(store.attendance_due()) == 40
    store.close()

    hub = start_hub(DOORS, clock=clock)  # the same folder and file
    _wait(lambda: len(hub.store.attendance(DAY)) == 40, 10, "the restarted hub to recompute the 40 due days")
    rows = {row.person_id: row for row in hub.store.attendance(DAY)}
    assert rows["p-007"].first_in == MORNING + timedelta(seconds=7)
    assert hub.store.attendance_due() == []


def test_a_burst_over_mqtt_moves_the_board_and_then_everybodys_day(broker: TestBroker, start_hub: HubStarter) -> None:
    clock = Clock(MORNING + timedelta(minutes=5))
    hub = start_hub(DOORS, clock=clock)
    people = _add_people(hub.store, 300)
    hub.mark_people_changed()
    door = MqttLink(settings_for(broker), client_id="door-in", max_inflight=1000)
    door.start()
    try:
        assert door.wait_connected(10)
        for received, _ in _arrivals(people):
            door.publish(received.topic, received.payload, qos=1)
        _wait(lambda: hub.counters.events_stored == 300, 30, "the hub to store the 300 arrivals")
        _wait(lambda: len(hub.store.attendance(DAY)) == 300, 10, "every arrival's day")
    finally:
        door.stop()
    assert all(row.first_in is not None and row.status == "open" for row in hub.store.attendance(DAY))
    assert hub.store.attendance_due() == []
    with hub.store_lock:
        shown = {p: state.state if (state := hub.board.state(p)) else None for p in people}
    assert shown == dict.fromkeys(people, "in")


def test_the_api_and_the_signoff_sweep_recompute_due_days_before_they_answer(
    start_hub: HubStarter,
) -> None:
    clock = Clock(MORNING + timedelta(minutes=5))
    hub = start_hub(DOORS, clock=clock)
    people = _add_people(hub.store, 20)
    with hub.store_lock:  # the writer cannot settle in between: this is what a request meets right after a burst
        hub.ingest.handle_batch(_arrivals(people))
        assert len(hub.store.attendance_due()) == 20
        answer = hub.api.attendance_day({"date": DAY.isoformat()}, "admin", clock())
    assert isinstance(answer, list) and len(answer) == 20
    assert hub.store.attendance_due() == []

    clock.now = MORNING + timedelta(hours=1)
    with hub.store_lock:
        hub.ingest.handle_batch(_arrivals(people[:5], 100, "door-out", clock.now))  # they leave
        assert len(hub.store.attendance_due()) == 5
        # The next morning, every door having reported an empty outbox: the sweep signs the day off, including the
        # five departures it had not seen recomputed yet.
        clock.now = datetime(2026, 3, 3, 5, 0, tzinfo=UTC)
        for device in ("door-in", "door-out"):
            hub.store.note_drained(device, clock.now - timedelta(minutes=10))
        signed = hub.sign_off(clock.now)
    rows = {row.person_id: row for row in hub.store.attendance(DAY)}
    assert signed == 20, {p: (r.status, r.final) for p, r in rows.items()}
    assert all(row.final for row in rows.values())
    assert rows["p-003"].last_out == MORNING + timedelta(hours=1, seconds=3)
    assert rows["p-010"].status == "forgot_checkout"


def test_a_slice_recomputes_the_longest_waiting_days_first(start_hub: HubStarter) -> None:
    clock = Clock(MORNING + timedelta(minutes=5))
    hub = start_hub(DOORS, clock=clock)
    people = _add_people(hub.store, 30)
    with hub.store_lock:
        hub.ingest.handle_batch(_arrivals(people))
        assert hub.board.attendance_due_for_s() is not None
        assert hub.board.settle_attendance(clock(), limit=12) == 12
        assert {row.person_id for row in hub.store.attendance(DAY)} == set(people[:12])
        assert hub.board.attendance_due_for_s() is not None, "18 still wait"
        assert hub.board.settle_attendance(clock()) == 18
        assert hub.board.attendance_due_for_s() is None
    assert len(hub.store.attendance(DAY)) == 30
