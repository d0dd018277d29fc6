"""The hub against hostile input through a real Mosquitto: one deeply nested message, events dated far away."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.protocol import wire
from edge.protocol.mqtt import MqttLink, Received
from hub.domain.attendance import local_day
from hub.service import HubService
from tests.helpers.brokers import TestBroker
from tests.helpers.factories import make_event
from tests.helpers.hub import Clock, HubStarter, hub_config, running_hub
from tests.helpers.mqtt import Collector, probe, settings_for

pytestmark = pytest.mark.integration

SITE = wire.Topics("hq")
DEEP_ARRAY = b"[" * 5000 + b"]" * 5000
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _acked(acks: Collector) -> set[str]:
    decoded = [wire.decode(m.topic, m.payload)[1] for m in acks.messages]
    return {i for ack in decoded if isinstance(ack, wire.Ack) for i in ack.event_ids}


def _send(broker: TestBroker, *messages: tuple[str, bytes]) -> None:
    """Publish as door-1 would, QoS 1, and wait until the broker has each one."""
    sender = MqttLink(settings_for(broker), client_id="edge-door-1")
    sender.start()
    try:
        assert sender.wait_connected(10)
        for topic, payload in messages:
            sender.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        sender.stop()


def test_a_nested_message_is_dead_lettered_and_the_good_ones_around_it_are_stored_and_acked(
    broker: TestBroker, start_hub: HubStarter
) -> None:
    hub = start_hub()
    now = wire.now_utc()
    good = [make_event(device="door-1", seq=seq, at=now) for seq in (1, 2)]
    with probe(broker, SITE.device_ack("door-1")) as acks:
        _send(
            broker,
            (SITE.device_event("door-1"), wire.encode(good[0])),
            (SITE.device_event("door-1"), DEEP_ARRAY),
            (SITE.device_event("door-1"), wire.encode(good[1])),
        )
        assert acks.wait_for(lambda _: _acked(acks) >= {e.event_id for e in good}, 20), "the good events are acked"
    assert all(hub.store.get_event(e.event_id) is not None for e in good)
    (letter,) = hub.store.dead_letters()
    assert letter.topic == SITE.device_event("door-1")
    assert "nested too deeply" in letter.reason
    assert letter.payload == DEEP_ARRAY


def test_a_nested_message_in_the_same_batch_spares_the_others(broker: TestBroker, start_hub: HubStarter) -> None:
    hub = start_hub()
    now = wire.now_utc()
    good = [make_event(device="door-1", seq=seq, at=now) for seq in (1, 2)]
    topic = SITE.device_event("door-1")
    batch = [
        (Received(topic, wire.encode(good[0]), 1, False), 0.0),
        (Received(topic, DEEP_ARRAY, 1, False), 0.0),
        (Received(topic, wire.encode(good[1]), 1, False), 0.0),
    ]
    with probe(broker, SITE.device_ack("door-1")) as acks:
        hub.handle_batch(batch)  # exactly one batch, as the writer takes it
        assert acks.wait_for(lambda _: _acked(acks) >= {e.event_id for e in good}, 20)
    assert all(hub.store.get_event(e.event_id) is not None for e in good)
    assert ["nested too deeply" in d.reason for d in hub.store.dead_letters()] == [True]


# --- events dated far from the hub's clock ----------------------------------------------------------------------


@pytest.fixture
def timed_hub(start_hub: HubStarter) -> tuple[HubService, Clock, str]:
    """A hub on a hand-set clock with one known person and door-1 as a `both` camera."""
    clock = Clock(T0)
    hub = start_hub('[[cameras]]\ndevice = "door-1"\nrole = "both"\n', clock=clock)
    person = hub.store.add_person("Ana Costa", clock.now)
    return hub, clock, person


def _deliver(broker: TestBroker, *events: wire.Event) -> None:
    with probe(broker, SITE.device_ack("door-1"), client_id="ack-watch") as acks:
        _send(broker, *((SITE.device_event(e.device), wire.encode(e)) for e in events))
        assert acks.wait_for(lambda _: _acked(acks) >= {e.event_id for e in events}, 20), "every event is acked"


def test_an_event_dated_2099_is_kept_but_moves_neither_presence_nor_attendance(
    broker: TestBroker, timed_hub: tuple[HubService, Clock, str]
) -> None:
    hub, clock, person = timed_hub
    future = make_event(device="door-1", seq=1, at=datetime(2099, 1, 1, tzinfo=UTC), person_id=person)
    _deliver(broker, future)
    assert hub.store.get_event(future.event_id) is not None, "kept: stored and acked, nothing accepted is lost"
    assert hub.board.state(person) is None, "the far-future sighting does not make the person IN"
    rules = hub.board.attendance_rules
    assert hub.store.attendance(local_day(future.at, rules)) == []
    (letter,) = hub.store.dead_letters()
    assert future.event_id in letter.reason and "ahead of the hub's clock" in letter.reason
    (device,) = hub.store.list_devices()
    assert device.delivered_through is None or device.delivered_through < datetime(2099, 1, 1, tzinfo=UTC)

    clock.now = T0 + timedelta(minutes=5)
    real = make_event(device="door-1", seq=2, at=T0 + timedelta(minutes=4), person_id=person)
    _deliver(broker, real)
    state = hub.board.state(person)
    assert state is not None and (state.state, state.since) == ("in", real.at), "a real sighting works normally"
    (row,) = hub.store.attendance(local_day(real.at, rules))
    assert row.first_in == real.at
    (device,) = hub.store.list_devices()
    assert device.delivered_seq == 2 and device.delivered_through == real.at


def test_an_event_older_than_the_retention_is_kept_but_moves_nothing(
    broker: TestBroker, timed_hub: tuple[HubService, Clock, str]
) -> None:
    hub, _, person = timed_hub
    old = make_event(device="door-1", seq=1, at=T0 - timedelta(days=181), person_id=person)
    _deliver(broker, old)
    assert hub.store.get_event(old.event_id) is not None
    assert hub.board.state(person) is None
    assert hub.store.attendance(local_day(old.at, hub.board.attendance_rules)) == []
    (letter,) = hub.store.dead_letters()
    assert old.event_id in letter.reason and "retention" in letter.reason


def test_a_sighting_ahead_beyond_the_skew_never_becomes_the_days_last_out(
    broker: TestBroker, timed_hub: tuple[HubService, Clock, str]
) -> None:
    hub, clock, person = timed_hub
    arrival = make_event(device="door-1", seq=1, at=T0 - timedelta(minutes=1), person_id=person)
    ahead = make_event(device="door-1", seq=2, at=T0 + timedelta(minutes=40), person_id=person)
    _deliver(broker, arrival, ahead)  # arrives at T0: 40 minutes ahead, beyond the 5 minutes a clock may drift
    state = hub.board.state(person)
    assert state is not None and state.last_seen == arrival.at
    clock.now = T0 + timedelta(minutes=50)  # the bad time has passed: it must still not count
    later = make_event(device="door-1", seq=3, at=T0 + timedelta(minutes=20), person_id=person)
    _deliver(broker, later)
    (row,) = hub.store.attendance(local_day(T0, hub.board.attendance_rules))
    assert (row.first_in, row.last_out, row.last_out_event) == (arrival.at, later.at, later.event_id)
    state = hub.board.state(person)
    assert state is not None and state.last_seen == later.at


def test_the_allowed_clock_skew_is_configurable(broker: TestBroker, tmp_path: Path, model_dir: Path) -> None:
    path = hub_config(tmp_path, broker, model_dir)
    path.write_text(path.read_text().replace("[attendance]\n", "[attendance]\nmax_clock_ahead_s = 3600\n"))
    clock = Clock(T0)
    with running_hub(path, clock=clock) as hub:
        person = hub.store.add_person("Ana Costa", clock.now)
        ahead = make_event(device="door-1", seq=1, at=T0 + timedelta(minutes=40), person_id=person)
        _deliver(broker, ahead)
        state = hub.board.state(person)
        assert state is not None and state.since == ahead.at, "40 minutes ahead is within the configured hour"
        assert hub.store.dead_letters() == []
