"""``rollcall bench flood``: a good door's ack latency while another publisher floods the hub with junk.

A real broker, the hub (in this process), a good device (a real outbox, publisher and MQTT link) sending events at
a steady rate, and a flooder in its own process publishing junk as fast as it can on its own device topic. The good
device's publish-to-ack latency is measured with the flood and without it (the baseline, in the same run); the
figures also say how much junk the hub counted and how few dead-letter rows it kept for it.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ulid import ULID

from edge.protocol import wire
from edge.protocol.config import MqttSettings
from edge.protocol.mqtt import MqttLink, Received
from edge.runtime.outbox import Outbox
from edge.runtime.publisher import OutboxPublisher
from rollcall.bench.runner import Benchmark, Figures, percentile

if TYPE_CHECKING:
    from hub.service import HubService

GOOD_DEVICE = "door-good"
FLOOD_DEVICE = "junk-1"


def junk_payloads(count: int, seed: int = 1) -> list[bytes]:
    """``count`` messages a broken or hostile publisher sends: bytes, broken JSON, wrong schemas, foreign claims."""
    rng = random.Random(seed)
    claim = wire.encode(
        wire.Event(
            event_id=str(ULID()),
            device=GOOD_DEVICE,  # speaks for another device than its topic: refused
            seq=1,
            at=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
            type="seen",
            person_id=None,
            score=0.3,
            margin=0.05,
            track=1,
            quality=0.8,
            has_snapshot=False,
        )
    )
    kinds = [
        lambda: rng.randbytes(rng.randint(1, 300)),
        lambda: b'{"v": 1, "event_id": ' + str(rng.random()).encode(),
        lambda: json.dumps({"v": 1, "junk": rng.randint(0, 10**9)}).encode(),
        lambda: claim,
    ]
    return [kinds[i % len(kinds)]() for i in range(count)]


FLOODER = """
import sys, time
from edge.protocol.mqtt import MqttLink
from edge.protocol.config import MqttSettings
from rollcall.bench.flood import junk_payloads
host, port, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
count, rate, qos = int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
link = MqttLink(MqttSettings(host=host, port=port, keepalive_s=30), client_id="bench-flooder", max_inflight=1000)
link.start()
link.wait_connected(10)
payloads = junk_payloads(count)
print("READY", flush=True)
sys.stdin.readline()
started = time.perf_counter()
infos = []
for i, payload in enumerate(payloads):
    infos.append(link.publish(topic, payload, qos=qos))
    if rate > 0:
        ahead = started + (i + 1) / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
for info in infos:
    info.wait_for_publish(120)
print("SENT", len(payloads), round(time.perf_counter() - started, 3), flush=True)
link.stop()
"""


class Flooder:
    """The junk publisher, a process of its own (like a broken device elsewhere on the network)."""

    def __init__(self, settings: MqttSettings, topic: str, count: int, *, rate: float = 0.0, qos: int = 0) -> None:
        self.count = count
        self.seconds = 0.0
        self.process = subprocess.Popen(
            [sys.executable, "-c", FLOODER, settings.host, str(settings.port), topic, str(count), str(rate), str(qos)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "READY":
            self.process.kill()
            raise RuntimeError("the flooder did not start")

    def go(self) -> None:
        """Start flooding."""
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def running(self) -> bool:
        """Whether it is still sending."""
        return self.process.poll() is None

    def wait(self, timeout: float = 300.0) -> None:
        """Until every junk message was handed to the broker."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        self.process.wait(timeout)
        if line[:1] != ["SENT"]:
            raise RuntimeError(f"the flooder failed (exit {self.process.returncode})")
        self.seconds = float(line[2])


@dataclass
class GoodDevice:
    """A door that behaves: a real outbox, publisher and link; records when each event was queued and acked."""

    settings: MqttSettings
    folder: Path
    topics: wire.Topics
    device: str = GOOD_DEVICE
    queued_at: dict[str, float] = field(default_factory=dict)
    acked_at: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.outbox = Outbox(self.folder / f"{self.device}.db", max_bytes=100_000_000)
        self.link = MqttLink(self.settings, client_id=f"edge-{self.device}", on_message=self._on_message)
        self.link.subscribe(self.topics.device_ack(self.device))
        self.publisher = OutboxPublisher(self.outbox, self.link, max_in_flight=100, resend_after_s=10.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.publisher.run, args=(self._stop, 0.05), name="good-publisher")
        self._lock = threading.Lock()
        self._seq = 0

    def _on_message(self, message: Received) -> None:
        _, ack = wire.decode(message.topic, message.payload)
        if isinstance(ack, wire.Ack):
            now = time.perf_counter()
            with self._lock:
                for event_id in ack.event_ids:
                    self.acked_at.setdefault(event_id, now)
            self.publisher.on_ack(ack)

    def start(self) -> None:
        """Connect and start publishing."""
        self.link.start()
        if not self.link.wait_subscribed(10):
            raise ConnectionError("the good device could not subscribe at the broker")
        self._thread.start()

    def send(self) -> str:
        """Queue one event in the outbox and wake the publisher; returns its id."""

        def build(seq: int) -> tuple[str, str, bytes]:
            event = wire.Event(
                event_id=str(ULID()),
                device=self.device,
                seq=seq,
                at=wire.now_utc(),
                type="seen",
                person_id=None,
                score=0.3,
                margin=0.05,
                track=seq,
                quality=0.8,
                has_snapshot=False,
            )
            return event.event_id, self.topics.device_event(self.device), wire.encode(event)

        message = self.outbox.add(build)
        with self._lock:
            self.queued_at[message.message_id] = time.perf_counter()
        self.publisher.wake()
        return message.message_id

    def latencies_ms(self, event_ids: list[str]) -> list[float]:
        """Queue-to-ack latencies of the acked ones, sorted."""
        with self._lock:
            return sorted((self.acked_at[i] - self.queued_at[i]) * 1000 for i in event_ids if i in self.acked_at)

    def all_acked(self, event_ids: list[str]) -> bool:
        """Whether the hub acked every one of them."""
        with self._lock:
            return all(i in self.acked_at for i in event_ids)

    def close(self) -> None:
        """Stop publishing and disconnect."""
        self._stop.set()
        self.publisher.wake()
        if self._thread.is_alive():
            self._thread.join(10)
        self.link.stop()
        self.outbox.close()


def _steady(device: GoodDevice, rate: float, go_on: Callable[[], bool]) -> list[str]:
    """Events at ``rate`` a second while ``go_on()`` holds (at least one)."""
    sent = [device.send()]
    next_at = time.perf_counter() + 1.0 / rate
    while go_on():
        time.sleep(max(0.0, next_at - time.perf_counter()))
        sent.append(device.send())
        next_at += 1.0 / rate
    return sent


def bench_flood(junk: int = 100_000, flood_rate: float = 10_000.0, rate: float = 20.0) -> dict[str, float | int | str]:
    """The good device's ack latency with and without a flood; starts a private broker (Mosquitto if installed)."""
    from hub.config import HubConfig, HubSettings
    from hub.service import HubService
    from hub.store import HubStore
    from rollcall.broker import LocalBroker, find_mosquitto

    with tempfile.TemporaryDirectory(prefix="rollcall-bench-flood-") as scratch:
        folder = Path(scratch)
        broker = LocalBroker(
            "mosquitto" if find_mosquitto() else "embedded", folder / "broker", max_queued_messages=1_000_000
        )
        broker.start()
        try:
            settings = MqttSettings(host=broker.host, port=broker.port, keepalive_s=30)
            hub_settings = HubSettings(
                id="hub-flood",
                database=folder / "hub.db",
                data_dir=folder / "hub",
                key_file=folder / "hub.key",
                accept_unknown_devices=True,  # the flood's doors register as they speak
            )
            config = HubConfig(mqtt=settings.model_copy(update={"client_id": "hub-flood"}), hub=hub_settings)
            store = HubStore.from_settings(hub_settings)
            hub = HubService(config, store, model_id="bench:none", embedding_size=128)
            hub.start()
            if not hub.link.wait_subscribed(10):
                raise ConnectionError("the bench hub could not subscribe")
            topics = hub.topics
            device = GoodDevice(settings, folder, topics)
            device.start()
            try:
                flooder = Flooder(settings, topics.device_event(FLOOD_DEVICE), junk, rate=flood_rate, qos=1)
                quiet_until = time.monotonic() + 5.0
                quiet = _steady(device, rate, lambda: time.monotonic() < quiet_until)
                flooder.go()
                flooded = _steady(device, rate, flooder.running)
                flooder.wait()
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and not device.all_acked(quiet + flooded):
                    time.sleep(0.05)
                deadline = time.monotonic() + 120
                sender = f"device/{FLOOD_DEVICE}"
                while time.monotonic() < deadline and store_count(hub, sender) < junk:
                    time.sleep(0.2)
                counted = store_count(hub, sender)
                with hub.store_lock:
                    rows = hub.store.dead_letter_rows()
                dropped = sum(hub.gate.dropped.values())
            finally:
                device.close()
                hub.stop()
                store.close()
        finally:
            broker.stop()
    quiet_ms = device.latencies_ms(quiet)
    flooded_ms = device.latencies_ms(flooded)
    return {
        "ack_p50_ms": round(percentile(flooded_ms, 0.50), 2),
        "ack_p95_ms": round(percentile(flooded_ms, 0.95), 2),
        "baseline_ack_p50_ms": round(percentile(quiet_ms, 0.50), 2),
        "baseline_ack_p95_ms": round(percentile(quiet_ms, 0.95), 2),
        "good_events": len(flooded),
        "good_acked": len(flooded_ms),
        "junk_sent": junk,
        "junk_per_s": round(junk / flooder.seconds) if flooder.seconds else 0,
        "junk_counted": counted,
        "junk_dropped_at_gate": dropped,
        "dead_letter_rows": rows,
        "broker": broker.kind,
    }


def store_count(hub: HubService, sender: str) -> int:
    """Dead letters the hub counted for one sender (under its store lock)."""
    with hub.store_lock:
        return hub.store.dead_letter_count(sender)


def _report(figures: Figures, args: argparse.Namespace) -> list[str]:
    return [
        f"  flood    : {figures['junk_sent']} junk messages at {figures['junk_per_s']}/s from one publisher "
        f"(broker {figures['broker']})",
        f"  ack      : p50 {figures['ack_p50_ms']} ms, p95 {figures['ack_p95_ms']} ms for the good door during the "
        f"flood ({figures['good_acked']} of {figures['good_events']} events acked)",
        f"  baseline : p50 {figures['baseline_ack_p50_ms']} ms, p95 {figures['baseline_ack_p95_ms']} ms without it",
        f"  junk     : {figures['junk_counted']} counted as dead letters ({figures['junk_dropped_at_gate']} dropped "
        f"at the gate), in {figures['dead_letter_rows']} rows",
    ]


BENCHMARK = Benchmark(
    headline=lambda args: (
        f"bench flood: {args.count} junk messages at up to {args.flood_rate:.0f}/s from one publisher while a good "
        "door sends 20 events/s; the same without the flood"
    ),
    measure=lambda args: bench_flood(junk=args.count, flood_rate=args.flood_rate),
    report=_report,
    check=lambda args: "rollcall bench flood: --count must be at least 1000" if args.count < 1000 else None,
)
