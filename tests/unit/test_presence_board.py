"""The presence board kept in memory: the bytes it publishes, the rows it remakes, and boards coalesced in a burst."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.protocol import wire
from edge.protocol.config import MqttSettings, SiteSettings
from hub.board import PresenceBoard
from hub.config import CameraRoleSettings, HubConfig, HubSettings
from hub.context import HubContext
from hub.store import HubStore, ReceivedEvent
from hub.store.schema import transaction
from tests.helpers.factories import make_event

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
TOPICS = wire.Topics("hq")


@dataclass
class Published:
    """What the board handed to the broker link: (topic, payload bytes, retain) in order."""

    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)

    def __call__(self, topic: str, payload: bytes | wire.Payload, qos: int = 1, retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes) else wire.encode(payload)
        self.messages.append((topic, data, retain))

    def boards(self) -> list[wire.Presence]:
        boards = []
        for topic, data, retain in self.messages:
            assert topic == TOPICS.hub_presence() and retain
            _, board = wire.decode(topic, data)  # strictly, as every supervisor decodes it
            assert isinstance(board, wire.Presence)
            boards.append(board)
        return boards


@dataclass
class Site:
    store: HubStore
    board: PresenceBoard
    published: Published
    clock: list[datetime]
    seq: dict[str, int] = field(default_factory=dict)
    """Each door's last sequence number (a door numbers its events)."""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    config = HubConfig(
        mqtt=MqttSettings(port=1883),
        hub=HubSettings(database=tmp_path / "hub.db", data_dir=tmp_path / "hub", key_file=tmp_path / "hub.key"),
        site=SiteSettings(id="hq"),
        cameras=[CameraRoleSettings(device="in-1", role="entrance"), CameraRoleSettings(device="out-1", role="exit")],
    )
    store = HubStore.from_settings(config.hub)
    for camera in config.cameras:
        store.upsert_device(camera.device, role=camera.role)
    clock = [T0]
    published = Published()
    context = HubContext(config, store, threading.RLock(), published, TOPICS, lambda: clock[0], "m:x", 128)
    yield Site(store, PresenceBoard(context), published, clock)
    store.close()


def add_people(store: HubStore, count: int) -> list[str]:
    ids = [f"p-{i:05d}" for i in range(count)]
    stamp = (T0 - timedelta(days=1)).isoformat()
    with transaction(store.db) as tx:
        tx.executemany(
            "INSERT INTO people (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
            [(p, f"Person {p[2:]}", stamp, stamp) for p in ids],
        )
    return ids


def arrive(site: Site, people: list[str], at: datetime, device: str = "in-1") -> None:
    """People seen at a door, stored and applied as the hub's ingest does with a batch."""
    events = []
    for i, person in enumerate(people):
        site.seq[device] = site.seq.get(device, 0) + 1
        event = make_event(at=at + timedelta(milliseconds=i), device=device, seq=site.seq[device], person_id=person)
        events.append(ReceivedEvent(event, at, None))
    inserted = set(site.store.insert_events(events))
    site.board.apply_events(events, inserted, at, site.board.roles())


def states(board: wire.Presence) -> dict[str, str]:
    return {entry.person_id: entry.state for entry in board.people}


def test_the_spliced_board_is_byte_for_byte_the_encoded_payload(site: Site) -> None:
    people = add_people(site.store, 300)
    site.board.publish_every_s = 0.0
    assert site.board.encoded(T0) == wire.encode(site.board.payload(T0))
    arrive(site, people[:120], T0)
    arrive(site, people[100:150], T0 + timedelta(hours=4), device="out-1")
    now = T0 + timedelta(hours=5)
    assert site.board.encoded(now) == wire.encode(site.board.payload(now))
    board = site.published.boards()[-1]
    assert states(board) == {p: "in" if i < 100 else "out" if i < 150 else "unknown" for i, p in enumerate(people)}, (
        "the last board holds every change, in and out"
    )
    assert [e.person_id for e in board.people] == sorted(people)


def test_people_added_renamed_and_erased_behind_the_boards_back_show_on_the_next_board(site: Site) -> None:
    people = add_people(site.store, 5)
    site.board.publish_every_s = 0.0
    arrive(site, people[:2], T0)
    later = T0 + timedelta(minutes=1)
    newcomer = site.store.add_person("Newcomer", later, person_id="p-new")
    site.store.rename_person(people[0], "Renamed Person", later)
    site.store.erase_person(people[1], later, actor="test")
    site.board.forget(people[1])
    site.board.publish(later)
    board = site.published.boards()[-1]
    names = {e.person_id: e.name for e in board.people}
    assert names[newcomer] == "Newcomer"
    assert names[people[0]] == "Renamed Person"
    assert states(board)[people[0]] == "in", "a rename keeps the presence"
    assert people[1] not in names, "an erased person leaves the board"
    assert site.board.encoded(later) == wire.encode(site.board.payload(later))
    arrive(site, ["p-new"], later + timedelta(seconds=1))  # seen right after being added: counted
    assert states(site.board.payload(later))["p-new"] == "in"


def test_a_burst_of_batches_makes_few_boards_and_the_last_one_is_the_latest_state(site: Site) -> None:
    people = add_people(site.store, 2000)
    site.board.publish_every_s = 0.25
    started = time.perf_counter()
    batches = [people[i : i + 50] for i in range(0, len(people), 50)]
    for k, batch in enumerate(batches):
        arrive(site, batch, T0 + timedelta(seconds=k))
    elapsed = time.perf_counter() - started
    print(f"{len(batches)} batches in {elapsed:.2f} s made {len(site.published.messages)} boards")
    assert 1 <= len(site.published.messages) <= elapsed / 0.25 + 1, "at most one board per interval"
    deadline = time.monotonic() + 5
    while site.board.due_in() is not None:  # as the hub's writer does between batches
        assert time.monotonic() < deadline, "a pending board must become due"
        time.sleep(site.board.due_in() or 0.0)
        site.board.publish_if_due()
    last = site.published.boards()[-1]
    assert set(states(last).values()) == {"in"}, "the last board published is never a stale one"
    assert site.board.publish_if_due() is False, "nothing pending: no board"


def test_a_timeout_that_marks_people_out_publishes_once_due(site: Site) -> None:
    people = add_people(site.store, 3)
    site.board.publish_every_s = 0.0
    arrive(site, people, T0)
    count = len(site.published.messages)
    site.board.expire(T0 + timedelta(days=2))
    assert len(site.published.messages) == count + 1
    assert set(states(site.published.boards()[-1]).values()) == {"out"}
    site.board.expire(T0 + timedelta(days=3))
    assert len(site.published.messages) == count + 1, "nobody timed out again: no board"
