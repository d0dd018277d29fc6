"""What one sender may cost the hub: the ingest gate's limits and fair queue, and dead letters kept in bounded rows."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.protocol.mqtt import Received
from hub.config import HubConfig, IngestSettings
from hub.gate import IngestGate, topic_sender
from hub.store import DeadLetterLimits, DeadLetterNote, HubStore
from hub.store.journal import OTHER_REASONS

BASE = "rollcall/hq"
NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


class FakeMonotonic:
    """A monotonic clock the test moves (the gate's rate buckets read it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _message(sender: str, payload: bytes = b"{}", leaf: str = "event") -> Received:
    return Received(f"{BASE}/{sender}/{leaf}", payload, 1, False)


def _drain(gate: IngestGate) -> list[Received]:
    taken = []
    while True:
        try:
            taken.append(gate.get_nowait()[0])
        except queue.Empty:
            return taken


def test_senders_are_named_by_the_entity_in_their_topic() -> None:
    assert topic_sender(f"{BASE}/device/door-1/event", BASE) == "device/door-1"
    assert topic_sender(f"{BASE}/agent/pc-7/activity", BASE) == "agent/pc-7"
    assert topic_sender(f"{BASE}/hub/request", BASE) == "hub"
    assert topic_sender("homeassistant/status", BASE) == "other"


def test_one_senders_backlog_never_delays_another_sender() -> None:
    gate = IngestGate(IngestSettings(sender_burst=10_000, sender_queue_messages=5_000), BASE)
    for _ in range(3_000):
        gate.offer(_message("device/junk-1"))
    gate.offer(_message("device/door-1", b'{"good": 1}'))
    first_two = [gate.get_nowait()[0].topic for _ in range(2)]
    assert f"{BASE}/device/door-1/event" in first_two  # served in its turn, not after the 3,000 queued before it
    assert len(_drain(gate)) == 2_999


def test_a_sender_over_its_queue_share_loses_its_newest_messages_counted() -> None:
    gate = IngestGate(IngestSettings(sender_burst=10_000, sender_queue_messages=100), BASE)
    for i in range(150):
        gate.offer(_message("device/junk-1", str(i).encode()))
    assert gate.offer(_message("device/door-1")) is True  # others still get in
    assert gate.waiting("device/junk-1") == 100
    assert gate.dropped["sender_queue"] == 50
    [drop] = gate.take_drops()
    assert (drop.sender, drop.count, drop.sample) == ("device/junk-1", 50, b"100")  # the first one dropped
    assert "ingest.sender_queue_messages" in drop.reason
    assert gate.take_drops() == []  # counted once
    assert [m.payload for m in _drain(gate) if m.topic.endswith("junk-1/event")] == [
        str(i).encode() for i in range(100)
    ]


def test_the_rate_limit_lets_a_burst_through_then_the_sustained_rate() -> None:
    clock = FakeMonotonic()
    gate = IngestGate(IngestSettings(sender_messages_per_s=10, sender_burst=20), BASE, clock=clock)
    accepted = sum(gate.offer(_message("device/junk-1")) for _ in range(50))
    assert accepted == 20
    assert gate.offer(_message("device/door-1")) is True  # every sender has its own bucket
    clock.now += 1.0
    assert sum(gate.offer(_message("device/junk-1")) for _ in range(50)) == 10
    assert gate.dropped["rate"] == 70
    [drop] = gate.take_drops()
    assert drop.count == 70 and "ingest.sender_messages_per_s" in drop.reason


def test_a_byte_rate_and_a_message_size_limit_apply_per_sender() -> None:
    clock = FakeMonotonic()
    settings = IngestSettings(sender_mb_per_s=1, sender_burst_mb=2, max_message_kb=1024)
    gate = IngestGate(settings, BASE, clock=clock)
    assert gate.offer(_message("device/door-1", b"x" * (1024 * 1024 + 1))) is False
    assert gate.dropped["size"] == 1
    megabyte = b"x" * (1024 * 1024 - 100)
    assert [gate.offer(_message("device/door-1", megabyte, "snapshot")) for _ in range(3)] == [True, True, False]
    clock.now += 1.0
    assert gate.offer(_message("device/door-1", megabyte, "snapshot")) is True
    reasons = sorted(d.reason for d in gate.take_drops())
    assert "ingest.max_message_kb" in reasons[0] and "ingest.sender_mb_per_s" in reasons[1]


def test_the_whole_queue_is_bounded() -> None:
    gate = IngestGate(IngestSettings(queue_messages=100, sender_queue_messages=100), BASE)
    for i in range(120):
        gate.offer(_message(f"device/d-{i}"))  # a sender per message: only the total bounds them
    assert gate.qsize() == 100 and gate.dropped["queue"] == 20


def test_ingest_settings_name_the_bad_key() -> None:
    with pytest.raises(ValueError, match="sender_queue_messages"):
        HubConfig.model_validate({"ingest": {"queue_messages": 1000, "sender_queue_messages": 2000}})
    with pytest.raises(ValueError, match="sender_messages_per_s"):
        HubConfig.model_validate({"ingest": {"sender_messages_per_s": 0}})


# --- dead letters in bounded rows ----------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HubStore]:
    instance = HubStore(tmp_path / "hub.db", tmp_path / "data", tmp_path / "hub.key")
    instance.dead_letter_limits = DeadLetterLimits(samples_per_hour=3, reasons_per_hour=2, max_rows=100)
    try:
        yield instance
    finally:
        instance.close()


def _note(reason: str, payload: bytes = b"junk", sender: str = "device/junk-1", count: int = 1) -> DeadLetterNote:
    return DeadLetterNote(f"{BASE}/{sender}/event", reason, payload, sender, count)


def test_past_the_samples_of_an_hour_dead_letters_are_counted_on_one_row(store: HubStore) -> None:
    store.record_dead_letters([_note("bad json", str(i).encode()) for i in range(1000)], NOW)
    assert store.dead_letter_rows() == 3
    assert store.dead_letter_count("device/junk-1") == 1000
    newest, *older = store.dead_letters()
    assert newest.count == 998 and [o.count for o in older] == [1, 1]
    assert [o.payload for o in reversed(older)] + [newest.payload] == [b"0", b"1", b"2"]  # the first ones, as samples
    store.record_dead_letters([_note("bad json")], NOW + timedelta(hours=1))  # a new hour keeps new samples
    assert store.dead_letter_rows() == 4


def test_more_reasons_than_allowed_share_one_row(store: HubStore) -> None:
    store.record_dead_letters([_note(f"reason {i}") for i in range(50)], NOW)
    letters = store.dead_letters()
    assert {letter.reason for letter in letters} == {"reason 0", "reason 1", OTHER_REASONS}
    others = [letter for letter in letters if letter.reason == OTHER_REASONS]
    assert len(others) == 3 and sum(letter.count for letter in others) == 48  # samples, then counted
    store.record_dead_letters([_note("reason 9", sender="device/other")], NOW)  # per sender
    assert store.dead_letter_count("device/other") == 1


def test_the_table_keeps_at_most_max_rows_the_newest(store: HubStore) -> None:
    for hour in range(60):
        store.record_dead_letters([_note(f"r{i}") for i in range(2)], NOW + timedelta(hours=hour))
    assert store.dead_letter_rows() == 100
    assert store.dead_letters(1)[0].received_at == NOW + timedelta(hours=59)


def test_dead_letters_have_their_own_retention(store: HubStore) -> None:
    store.record_dead_letter("t", "old", b"x", NOW - timedelta(days=40))
    store.record_dead_letter("t", "new", b"y", NOW - timedelta(days=10))
    store.purge(NOW - timedelta(days=180), NOW - timedelta(days=30), NOW - timedelta(days=30))
    assert [d.reason for d in store.dead_letters()] == ["new"]
