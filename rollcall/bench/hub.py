"""``rollcall bench hub``: sustained ingest from a real broker into SQLite, latency, and a 10,000-person gallery.

Ingest is measured for the hub as it runs (batched transactions through one writer) and for a naive ingester that
commits every event on its own (the same service with batches of one), side by side on the same broker.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from ulid import ULID

from edge.protocol import wire
from edge.protocol.config import MqttSettings, SiteSettings
from edge.protocol.mqtt import MqttLink, Received
from edge.protocol.progress import Progress
from edge.recognition.gallery import Gallery
from edge.recognition.gallery_codec import GalleryAssembler, build_publication
from hub.config import HubConfig, HubSettings
from hub.service import HubService
from hub.store import HubStore
from rollcall.bench.runner import Benchmark, Figures, at_least, percentile
from rollcall.broker import LocalBroker, find_mosquitto

MODEL_ID = "bench:MobileFaceNet.onnx"


def _events(device: str, count: int) -> list[tuple[str, bytes]]:
    start = datetime.now(UTC)
    out = []
    for seq in range(1, count + 1):
        event = wire.Event(
            event_id=str(ULID()),
            device=device,
            seq=seq,
            at=start,
            type="seen",
            person_id=None,
            score=0.3,
            margin=0.05,
            track=seq,
            quality=0.8,
            has_snapshot=False,
        )
        out.append((event.event_id, wire.encode(event)))
    return out


def _hub(settings: MqttSettings, folder: Path, name: str, max_batch: int) -> HubService:
    hub_settings = HubSettings(
        id=f"hub-{name}",
        database=folder / f"{name}.db",
        data_dir=folder / name,
        key_file=folder / f"{name}.key",
        accept_unknown_devices=True,  # the bench's doors register as they speak
    )
    config = HubConfig(
        mqtt=settings.model_copy(update={"client_id": f"hub-{name}"}),
        hub=hub_settings,
        site=SiteSettings(id=f"bench-{name}"),
    )
    service = HubService(
        config, HubStore.from_settings(hub_settings), model_id=MODEL_ID, embedding_size=128, max_batch=max_batch
    )
    service.start()
    if not service.link.wait_subscribed(10):
        raise ConnectionError("bench hub could not subscribe")
    return service


SENDER = """
import sys
from edge.protocol.mqtt import MqttLink
from edge.protocol.config import MqttSettings
from rollcall.bench.hub import _events
host, port, topic, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
link = MqttLink(MqttSettings(host=host, port=port), client_id="bench-sender-" + topic.split("/")[1], max_inflight=1000)
link.start()
link.wait_connected(10)
payloads = [p for _, p in _events("door-bench", count)]
print("READY", flush=True)
sys.stdin.readline()
infos = [link.publish(topic, payload, qos=1) for payload in payloads]
for info in infos:
    info.wait_for_publish(60)
link.stop()
"""


def _ingest(settings: MqttSettings, folder: Path, name: str, max_batch: int, count: int, progress: bool) -> float:
    """Events/s from the first publish to the last commit; the sender is its own process, like a device."""
    import subprocess
    import sys

    hub = _hub(settings, folder, name, max_batch)
    topic = wire.Topics(f"bench-{name}").device_event("door-bench")
    sender = subprocess.Popen(
        [sys.executable, "-c", SENDER, settings.host, str(settings.port), topic, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sender.stdin is not None and sender.stdout is not None
    if sender.stdout.readline().strip() != "READY":
        raise RuntimeError("the bench sender did not start")
    started = time.perf_counter()
    sender.stdin.write("go\n")
    sender.stdin.flush()
    with Progress(f"ingest ({name})", count, enabled=progress) as bar:
        while hub.counters.events_stored < count:
            bar.advance(hub.counters.events_stored - bar.done)
            time.sleep(0.02)
        bar.advance(count - bar.done)
    elapsed = time.perf_counter() - started
    sender.wait(30)
    hub.stop()
    hub.store.close()
    return count / elapsed


def _latency(settings: MqttSettings, folder: Path, rate: float, seconds: float, progress: bool) -> list[float]:
    hub = _hub(settings, folder, "latency", 500)
    topics = wire.Topics("bench-latency")
    acked: dict[str, float] = {}
    lock = threading.Lock()

    def on_ack(message: Received) -> None:
        _, ack = wire.decode(message.topic, message.payload)
        if isinstance(ack, wire.Ack):
            now = time.perf_counter()
            with lock:
                for event_id in ack.event_ids:
                    acked.setdefault(event_id, now)

    device = MqttLink(settings, client_id="device-latency", on_message=on_ack)
    device.subscribe(topics.device_ack("door-bench"))
    device.start()
    device.wait_subscribed(10)
    count = int(rate * seconds)
    sent: dict[str, float] = {}
    with Progress(f"latency at {rate:.0f} events/s", count, enabled=progress) as bar:
        next_at = time.perf_counter()
        for event_id, payload in _events("door-bench", count):
            sent[event_id] = time.perf_counter()
            device.publish(topics.device_event("door-bench"), payload, qos=1)
            bar.advance()
            next_at += 1 / rate
            time.sleep(max(0.0, next_at - time.perf_counter()))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(acked) < count:
        time.sleep(0.05)
    device.stop()
    hub.stop()
    hub.store.close()
    return sorted((acked[i] - t) * 1000 for i, t in sent.items() if i in acked)


def _gallery_swap(settings: MqttSettings, people: int) -> tuple[int, float]:
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(people, 128)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = [f"p-{i:06d}" for i in range(people)]
    gallery = Gallery(
        labels, embeddings, names={label: f"Person {label}" for label in labels}, version=1, model_id=MODEL_ID
    )
    topics = wire.Topics("bench-gallery")
    manifest, chunks = build_publication(gallery, "door-bench", datetime.now(UTC))
    wire_bytes = len(wire.encode(manifest)) + sum(len(wire.encode(chunk)) for chunk in chunks)
    swapped = threading.Event()
    assembler = GalleryAssembler(MODEL_ID, 128)

    def on_part(message: Received) -> None:
        _, part = wire.decode(message.topic, message.payload)
        if isinstance(part, (wire.GalleryManifest, wire.GalleryChunk)) and assembler.feed(part) is not None:
            swapped.set()

    device = MqttLink(settings, client_id="device-gallery", on_message=on_part)
    device.subscribe(topics.device_gallery("door-bench"))
    device.subscribe(topics.device_gallery_chunk("door-bench", 0).rsplit("/", 1)[0] + "/+")
    device.start()
    device.wait_subscribed(10)
    hub = MqttLink(settings, client_id="hub-gallery")
    hub.start()
    hub.wait_connected(10)
    started = time.perf_counter()
    for chunk in chunks:
        hub.publish(topics.device_gallery_chunk("door-bench", chunk.index), chunk, qos=1, retain=True)
    hub.publish(topics.device_gallery("door-bench"), manifest, qos=1, retain=True)
    swapped.wait(60)
    elapsed = time.perf_counter() - started
    hub.stop()
    device.stop()
    return wire_bytes, elapsed


def bench_hub(events: int = 20_000, progress: bool = True) -> dict[str, float | int | str]:
    """All hub figures; starts a private broker (Mosquitto if installed)."""
    with tempfile.TemporaryDirectory(prefix="rollcall-bench-hub-") as scratch:
        folder = Path(scratch)
        broker = LocalBroker(
            "mosquitto" if find_mosquitto() else "embedded", folder / "broker", max_queued_messages=200_000
        )
        broker.start()
        try:
            settings = MqttSettings(host=broker.host, port=broker.port, keepalive_s=30)
            batched = _ingest(settings, folder, "batched", 500, events, progress)
            naive = _ingest(settings, folder, "naive", 1, max(500, events // 10), progress)
            latencies = _latency(settings, folder, 100.0, 10.0, progress)
            gallery_bytes, swap_s = _gallery_swap(settings, 10_000)
        finally:
            broker.stop()
    p95 = percentile(latencies, 0.95)
    return {
        "ingest_events_per_s": round(batched),
        "naive_events_per_s": round(naive),
        "ratio": round(batched / naive, 1) if naive else 0.0,
        "latency_p95_ms": round(p95, 2),
        "latency_samples": len(latencies),
        "gallery_10k_bytes": gallery_bytes,
        "gallery_10k_swap_s": round(swap_s, 3),
        "broker": broker.kind,
    }


def _report(figures: Figures, args: argparse.Namespace) -> list[str]:
    return [
        f"  ingest   : {figures['ingest_events_per_s']:>8} events/s (batched, one writer)",
        f"  baseline : {figures['naive_events_per_s']:>8} events/s (one commit per event)",
        f"  ratio    : {figures['ratio']}x",
        f"  latency  : p95 {figures['latency_p95_ms']} ms publish -> ack after commit, at 100 events/s",
        f"  gallery  : 10,000 people = {figures['gallery_10k_bytes']:,} bytes on the wire, "
        f"swapped in after {figures['gallery_10k_swap_s']} s",
    ]


BENCHMARK = Benchmark(
    headline=lambda args: (
        f"bench hub: ingest of {args.events} events, latency at 100 events/s, gallery of 10,000 people"
    ),
    measure=lambda args: bench_hub(events=args.events),
    report=_report,
    check=at_least("hub", "--events", 1000),
)
