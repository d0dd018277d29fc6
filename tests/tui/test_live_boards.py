"""Presence boards in the TUI: decoded on their own thread, the newest only, so a rush of boards holds nothing up."""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from edge.protocol import wire
from edge.protocol.mqtt import MqttLink, Received
from tests.tui.conftest import SITE, START
from tui.live import LatestBoard, LiveState


def _board(people: int, state: str, n: int) -> bytes:
    entries = [
        wire.PresenceEntry(person_id=f"p-{i:05d}", name=f"Person {i}", state=state, since=START, door="door-1")  # type: ignore[arg-type]
        for i in range(people)
    ]
    return wire.encode(wire.Presence(at=START + timedelta(seconds=n), people=entries))


def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_board_offered_while_another_waits_replaces_it_and_stop_decodes_the_last() -> None:
    handled: list[bytes] = []
    busy = threading.Event()
    release = threading.Event()

    def slow(message: Received) -> None:
        busy.set()
        release.wait(5)
        handled.append(message.payload)

    boards = LatestBoard(slow, rest_ratio=0.0)
    boards.start()
    boards.offer(Received("board", b"1", 1, True))
    assert busy.wait(5)  # board 1 is being decoded; 2, 3 and 4 arrive meanwhile
    for n in (b"2", b"3", b"4"):
        boards.offer(Received("board", n, 1, True))
    release.set()
    boards.stop()
    assert handled == [b"1", b"4"] and boards.replaced == 2


def _decode_times(offer_every_s: float, decode_s: float, rest_max_s: float) -> list[float]:
    """Offer boards for a second, each decode taking ``decode_s``; when each decode started."""
    started: list[float] = []

    def decode(message: Received) -> None:
        started.append(time.monotonic())
        time.sleep(decode_s)

    boards = LatestBoard(decode, rest_ratio=3.0, rest_max_s=rest_max_s)
    boards.start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            boards.offer(Received("board", b"x", 1, True))
            time.sleep(offer_every_s)
    finally:
        boards.stop()
    return started


def test_the_decoder_rests_three_times_as_long_as_a_decode_took_at_most_the_cap() -> None:
    # A 50 ms board: 150 ms of rest, so at most one decode each 200 ms (a quarter of a core), never one per offer.
    # The last gap is left out: stop() cuts the rest short to decode the board still waiting.
    gaps = [b - a for a, b in itertools.pairwise(_decode_times(0.01, 0.05, rest_max_s=1.0))][:-1]
    assert gaps and min(gaps) >= 0.19, gaps
    assert len(gaps) <= 5
    # A 100 ms board: the rest is capped at 120 ms, not 300 ms (decodes 220 ms apart, not 400).
    capped = [b - a for a, b in itertools.pairwise(_decode_times(0.01, 0.1, rest_max_s=0.12))][:-1]
    assert capped and min(capped) >= 0.21 and statistics.median(capped) < 0.35, capped


def test_small_boards_wait_next_to_nothing() -> None:
    # A board of a small site decodes in microseconds: boards offered each 20 ms are each decoded.
    assert len(_decode_times(0.02, 0.0, rest_max_s=0.25)) >= 30


def test_a_rush_of_large_boards_over_the_broker_ends_on_the_newest_and_other_messages_still_arrive(
    live: LiveState, publisher: MqttLink
) -> None:
    topics = SITE
    for n in range(20):  # twenty boards of 5,000 rows back to back: everybody IN on the last one only
        publisher.publish(topics.hub_presence(), _board(5_000, "in" if n == 19 else "out", n), qos=1, retain=True)
    publisher.publish(
        topics.device_health("door-1"),
        wire.Health(device="door-1", at=START, uptime_s=1.0, fps=9.5, cpu_percent=10.0, outbox_depth=0),
        qos=1,
    )
    assert _until(lambda: any(d.device == "door-1" for d in live.devices()), 10)
    assert _until(lambda: len(live.presence()) == 5_000 and all(e.state == "in" for e in live.presence()), 20)
    assert live.boards.replaced > 0  # not every board was decoded: the newest replaced those still waiting
