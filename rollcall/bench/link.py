"""``rollcall bench link``: outbox drain rate after an outage and confirm-to-commit latency, over a real broker.

Both figures use the device's real outbox (SQLite, WAL, synchronous=FULL), the real publisher and MQTT link, and a
receiver that commits to SQLite before it acks (the hub's rule). The baseline is stop-and-wait: one message in
flight, the next sent only after the previous one's ack, measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ulid import ULID

from edge.protocol import wire
from edge.protocol.config import MqttSettings
from edge.protocol.mqtt import MqttLink, Received
from edge.protocol.progress import Progress
from edge.runtime.outbox import Outbox
from edge.runtime.publisher import OutboxPublisher
from rollcall.bench.runner import Benchmark, Figures, at_least, percentile
from rollcall.broker import LocalBroker, find_mosquitto
from rollcall.tools.receiver import AckingReceiver

DEVICE = "door-bench"


def _event_builder(topics: wire.Topics) -> Callable[[int], tuple[str, str, bytes]]:
    def build(seq: int) -> tuple[str, str, bytes]:
        event_id = str(ULID())
        payload = wire.Event(
            event_id=event_id,
            device=DEVICE,
            seq=seq,
            at=datetime.now(UTC),
            type="seen",
            person_id=f"p-{seq % 500:04d}",
            score=0.7,
            margin=0.2,
            track=seq,
            quality=0.9,
            has_snapshot=False,
        )
        return event_id, topics.device_event(DEVICE), wire.encode(payload)

    return build


class _Device:
    """Outbox + link + publisher thread, wired like the door service."""

    def __init__(self, settings: MqttSettings, folder: Path, topics: wire.Topics, window: int, name: str) -> None:
        self.outbox = Outbox(folder / f"{name}.db", max_bytes=500_000_000)
        self.link = MqttLink(settings, client_id=f"edge-{name}", on_message=self._on_message)
        self.link.subscribe(topics.device_ack(DEVICE))
        self.publisher = OutboxPublisher(self.outbox, self.link, max_in_flight=window, resend_after_s=30.0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.publisher.run, args=(self.stop, 0.05), name=f"publisher-{name}")

    def _on_message(self, message: Received) -> None:
        _, payload = wire.decode(message.topic, message.payload)
        if isinstance(payload, wire.Ack):
            self.publisher.on_ack(payload)

    def start(self) -> None:
        self.link.start()
        if not self.link.wait_subscribed(10):
            raise ConnectionError("bench device could not connect to the broker")
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.publisher.wake()
        self.thread.join(10)
        self.link.stop()
        self.outbox.close()


def _drain(
    settings: MqttSettings, folder: Path, topics: wire.Topics, events: int, window: int, name: str, progress: bool
) -> float:
    device = _Device(settings, folder, topics, window, name)
    build = _event_builder(topics)
    with Progress(f"queueing {events} events ({name})", events, enabled=progress) as bar:
        for _ in range(events):
            device.outbox.add(build)
            bar.advance()
    started = time.perf_counter()
    device.start()
    with Progress(f"draining ({name})", events, enabled=progress) as bar:
        while (depth := device.outbox.stats().depth) > 0:
            bar.advance(events - depth - bar.done)
            time.sleep(0.02)
        bar.advance(events - bar.done)
    elapsed = time.perf_counter() - started
    device.close()
    return events / elapsed


def _latency(
    settings: MqttSettings,
    folder: Path,
    topics: wire.Topics,
    receiver: AckingReceiver,
    rate: float,
    seconds: float,
    progress: bool,
) -> list[float]:
    device = _Device(settings, folder, topics, 100, "latency")
    device.start()
    build = _event_builder(topics)
    confirmed: dict[str, float] = {}
    count = int(rate * seconds)
    with Progress(f"latency at {rate:.0f} events/s", count, enabled=progress) as bar:
        next_at = time.perf_counter()
        for _ in range(count):
            now = time.time()
            message = device.outbox.add(build)
            confirmed[message.message_id] = now
            device.publisher.wake()
            bar.advance()
            next_at += 1.0 / rate
            time.sleep(max(0.0, next_at - time.perf_counter()))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(i in receiver.committed_at for i in confirmed):
        time.sleep(0.05)
    device.close()
    return sorted((receiver.committed_at[i] - t) * 1000 for i, t in confirmed.items() if i in receiver.committed_at)


def bench_link(
    events: int = 10_000,
    baseline_events: int = 1_000,
    rate: float = 100.0,
    seconds: float = 10.0,
    broker: tuple[str, int] | None = None,
    progress: bool = True,
) -> dict[str, float | int | str]:
    """Drain and latency figures; starts a private broker (Mosquitto if installed) unless ``broker`` is given."""
    with tempfile.TemporaryDirectory(prefix="rollcall-bench-link-") as scratch:
        folder = Path(scratch)
        local: LocalBroker | None = None
        if broker is None:
            local = LocalBroker(
                "mosquitto" if find_mosquitto() else "embedded", folder / "broker", max_queued_messages=100_000
            )
            local.start()
            broker = (local.host, local.port)
        try:
            settings = MqttSettings(host=broker[0], port=broker[1], keepalive_s=30)
            topics = wire.Topics("bench")
            receiver = AckingReceiver(settings, folder / "hub.db", site="bench", client_id="bench-receiver")
            receiver.start()
            try:
                ours = _drain(settings, folder, topics, events, 100, "window-100", progress)
                baseline = _drain(settings, folder, topics, baseline_events, 1, "stop-and-wait", progress)
                latencies = _latency(settings, folder, topics, receiver, rate, seconds, progress)
            finally:
                receiver.stop()
        finally:
            if local is not None:
                local.stop()
    return {
        "drain_events_per_s": round(ours),
        "baseline_drain_events_per_s": round(baseline),
        "drain_ratio": round(ours / baseline, 2) if baseline else 0.0,
        "latency_p50_ms": round(percentile(latencies, 0.50), 2),
        "latency_p95_ms": round(percentile(latencies, 0.95), 2),
        "latency_samples": len(latencies),
        "broker": local.kind if local is not None else f"{broker[0]}:{broker[1]}",
    }


def _report(figures: Figures, args: argparse.Namespace) -> list[str]:
    return [
        f"  drain    : {figures['drain_events_per_s']:>8} events/s (window 100)",
        f"  baseline : {figures['baseline_drain_events_per_s']:>8} events/s (stop-and-wait)",
        f"  ratio    : {figures['drain_ratio']:.1f}x",
        f"  latency  : p50 {figures['latency_p50_ms']} ms, p95 {figures['latency_p95_ms']} ms "
        f"({figures['latency_samples']} events, confirmed to committed at the receiver; broker {figures['broker']})",
    ]


BENCHMARK = Benchmark(
    headline=lambda args: f"bench link: drain of {args.events} queued events, then latency at 100 events/s",
    measure=lambda args: bench_link(events=args.events, baseline_events=max(100, args.events // 10)),
    report=_report,
    check=at_least("link", "--events", 100),
)
