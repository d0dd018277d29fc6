"""The door device service against a real Mosquitto: outages, crashes, a missing hub, galleries, caps, commands."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from ulid import ULID

from edge.door.config import EdgeConfig
from edge.door.service import EdgeService
from edge.protocol import wire
from edge.protocol.config import load_config
from edge.protocol.mqtt import MqttLink
from edge.recognition.engine import build_engine
from edge.recognition.faces import FaceEngine
from edge.recognition.gallery import Gallery
from edge.recognition.gallery_codec import build_publication
from edge.recognition.pipeline import FaceEvent
from rollcall.tools.receiver import AckingReceiver
from tests.conftest import REPO_ROOT
from tests.helpers.brokers import TestBroker
from tests.helpers.mqtt import probe, settings_for

pytestmark = pytest.mark.integration

SITE = wire.Topics("hq")
DEVICE = "door-1"


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def write_config(
    tmp_path: Path, broker: TestBroker, model_dir: Path, camera: Path | None = None, **outbox: float
) -> Path:
    """An edge config for door-1 on the test broker, camera = a folder with one blank picture unless given."""
    if camera is None:
        camera = tmp_path / "camera"
        camera.mkdir(exist_ok=True)
        cv2.imwrite(str(camera / "blank.png"), np.full((360, 640, 3), 90, np.uint8))
    outbox_lines = "\n".join(f"{key} = {value}" for key, value in {"resend_after_s": 2.0, **outbox}.items())
    path = tmp_path / "edge.toml"
    path.write_text(
        f"""
[site]
id = "hq"

[mqtt]
host = "127.0.0.1"
port = {broker.port}
keepalive_s = 5
reconnect_min_s = 1
reconnect_max_s = 2

[device]
id = "{DEVICE}"
data_dir = "{tmp_path / "edge-data"}"

[camera]
source = "{camera}"
fps = 10
realtime = true
loop = true

[models]
dir = "{model_dir}"

[outbox]
{outbox_lines}

[health]
interval_s = 1
"""
    )
    return path


class EdgeProcess:
    """`tests.helpers.edge_process` as a child: the real service, producing synthetic events."""

    def __init__(self, config: Path, events: int = 0, rate: float = 100.0, snapshots: bool = False) -> None:
        command = [sys.executable, "-m", "tests.helpers.edge_process", "--config", str(config)]
        command += ["--events", str(events), "--rate", str(rate)] + (["--snapshots"] if snapshots else [])
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        self.added: list[tuple[int, str]] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("ADDED "):
                _, seq, event_id = line.split()
                self.added.append((int(seq), event_id))
            elif line.startswith("READY"):
                self.ready.set()
            elif line.startswith("DONE"):
                self.done.set()

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        self.process.kill()
        self.process.wait(10)
        self._reader.join(5)

    def terminate(self) -> int:
        """SIGTERM and the exit status."""
        self.process.terminate()
        status = self.process.wait(20)
        self._reader.join(5)
        return status


@pytest.fixture
def receiver(broker: TestBroker, tmp_path: Path) -> Iterator[AckingReceiver]:
    """The hub stand-in: commits events to a real SQLite file, then acks."""
    instance = AckingReceiver(settings_for(broker), tmp_path / "hub.db", client_id="hub-test")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def outbox_depth(tmp_path: Path) -> int:
    """Messages still in the device's outbox file."""
    connection = sqlite3.connect(tmp_path / "edge-data" / "outbox.db")
    try:
        return int(connection.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
    finally:
        connection.close()


def integrity(tmp_path: Path) -> str:
    """PRAGMA integrity_check of the device's outbox file."""
    connection = sqlite3.connect(tmp_path / "edge-data" / "outbox.db")
    try:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        connection.close()


def test_a_60_s_broker_outage_loses_nothing(
    broker: TestBroker, receiver: AckingReceiver, tmp_path: Path, model_dir: Path
) -> None:
    edge = EdgeProcess(write_config(tmp_path, broker, model_dir), events=500, rate=25)
    try:
        assert edge.ready.wait(60)
        assert wait_until(lambda: len(receiver.stored_events()) >= 20, 30), "nothing arrived before the outage"
        broker.stop()
        outage_started = time.monotonic()
        time.sleep(60)
        produced_during_outage = [seq for seq, _ in edge.added if seq > len(receiver.stored_events())]
        broker.start()
        assert time.monotonic() - outage_started >= 60
        assert len(produced_during_outage) > 100, "events must have been produced while the broker was away"
        assert edge.done.wait(60)
        assert wait_until(lambda: len(receiver.stored_events()) == 500, 90)
    finally:
        assert edge.terminate() == 0
    stored = receiver.stored_events()
    assert [seq for _, _, seq in stored] == list(range(1, 501))
    assert {event_id for event_id, _, _ in stored} == {event_id for _, event_id in edge.added}
    assert outbox_depth(tmp_path) == 0


def test_sigkill_at_20_random_moments_keeps_exactly_what_was_accepted(
    broker: TestBroker, receiver: AckingReceiver, tmp_path: Path, model_dir: Path
) -> None:
    config = write_config(tmp_path, broker, model_dir)
    rng = random.Random(2026)
    accepted: set[str] = set()
    for _ in range(20):
        edge = EdgeProcess(config, events=100_000, rate=300, snapshots=True)
        assert edge.ready.wait(60)
        time.sleep(rng.uniform(0.05, 1.2))
        edge.kill()
        accepted.update(event_id for _, event_id in edge.added)
        assert integrity(tmp_path) == "ok"
    drain = EdgeProcess(config)
    try:
        assert drain.ready.wait(60)
        assert wait_until(lambda: outbox_depth(tmp_path) == 0, 60), "the outbox did not drain"
    finally:
        assert drain.terminate() == 0
    stored = receiver.stored_events()
    stored_ids = [event_id for event_id, _, _ in stored]
    assert len(stored_ids) == len(set(stored_ids))
    assert accepted <= set(stored_ids), "an event the outbox accepted never reached the receiver"
    # Every committed row arrived, also those committed just before a kill and never reported: no gaps in seq.
    assert [seq for _, _, seq in stored] == list(range(1, len(stored) + 1))
    assert integrity(tmp_path) == "ok"


def test_events_survive_a_hub_away_longer_than_the_broker_queue(
    tmp_path: Path, model_dir: Path, broker_kind_for_test: str
) -> None:
    small = TestBroker(kind="mosquitto", workdir=tmp_path / "small-broker", max_queued_messages=10)
    small.start()
    try:
        hub_db = tmp_path / "hub.db"
        first = AckingReceiver(settings_for(small), hub_db, client_id="hub-test")
        first.start()
        first.stop()  # its persistent session stays at the broker, which will queue only 10 messages for it
        edge = EdgeProcess(write_config(tmp_path, small, model_dir), events=200, rate=200)
        try:
            assert edge.ready.wait(60) and edge.done.wait(60)
            time.sleep(3)  # the broker has dropped what does not fit its queue by now
            assert outbox_depth(tmp_path) == 200, "nothing may leave the outbox without the hub's ack"
            second = AckingReceiver(settings_for(small), hub_db, client_id="hub-test")
            second.start()
            try:
                assert wait_until(lambda: len(second.stored_events()) == 200, 90)
                assert wait_until(lambda: outbox_depth(tmp_path) == 0, 30)
            finally:
                second.stop()
        finally:
            assert edge.terminate() == 0
        assert [seq for _, _, seq in second.stored_events()] == list(range(1, 201))
    finally:
        small.stop()


@pytest.fixture
def broker_kind_for_test() -> str:
    """This test needs Mosquitto's max_queued_messages; fail clearly where it is missing."""
    from tests.conftest import broker_kind

    kind = broker_kind()
    if kind != "mosquitto":
        pytest.skip("needs Mosquitto (max_queued_messages); ROLLCALL_REQUIRE_MOSQUITTO=1 makes this a failure")
    return kind


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> FaceEngine:
    """The default pack, built once for the in-process services."""
    return build_engine(model_dir=model_dir)


def _gallery(engine: FaceEngine, version: int, people: int = 5) -> Gallery:
    rng = np.random.default_rng(version)
    embeddings = rng.normal(size=(people, engine.embedder.embedding_size)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = [f"p-{i:04d}" for i in range(people)]
    return Gallery(
        labels, embeddings, names={label: label for label in labels}, version=version, model_id=engine.embedder.model_id
    )


def _publish_gallery(broker: TestBroker, gallery: Gallery, corrupt: bool = False, chunk_bytes: int = 1024) -> None:
    manifest, chunks = build_publication(gallery, DEVICE, datetime.now(UTC), chunk_bytes=chunk_bytes)
    if corrupt:
        broken = bytearray(chunks[0].data)
        broken[len(broken) // 2] ^= 0xFF
        chunks[0] = chunks[0].model_copy(update={"data": bytes(broken)})
    hub = MqttLink(settings_for(broker), client_id="hub-gallery")
    hub.start()
    assert hub.wait_connected(10)
    for chunk in chunks:
        hub.publish(SITE.device_gallery_chunk(DEVICE, chunk.index), chunk, qos=1, retain=True).wait_for_publish(5)
    hub.publish(SITE.device_gallery(DEVICE), manifest, qos=1, retain=True).wait_for_publish(5)
    hub.stop()


def _service(
    tmp_path: Path, broker: TestBroker, model_dir: Path, engine: FaceEngine, camera: Path | None = None, **outbox: float
) -> EdgeService:
    config = load_config(EdgeConfig, write_config(tmp_path, broker, model_dir, camera=camera, **outbox), "edge", {})
    return EdgeService(config, engine=engine)


def test_gallery_updated_while_offline_converges_and_a_bad_one_is_refused(
    broker: TestBroker, tmp_path: Path, model_dir: Path, engine: FaceEngine
) -> None:
    _publish_gallery(broker, _gallery(engine, 1))
    first = _service(tmp_path, broker, model_dir, engine)
    first.start()
    assert wait_until(lambda: first.pipeline.gallery.version == 1, 15)
    first.stop()

    _publish_gallery(broker, _gallery(engine, 2, people=40))  # while the device is off
    second = _service(tmp_path, broker, model_dir, engine)
    assert second.pipeline.gallery.version == 1, "the stored, encrypted gallery must load before any network"
    second.start()
    try:
        assert wait_until(lambda: second.pipeline.gallery.version == 2, 15)
        assert len(second.pipeline.gallery) == 40
        _publish_gallery(broker, _gallery(engine, 3), corrupt=True)
        assert wait_until(lambda: second.status.gallery_error is not None, 15)
        assert "checksum" in (second.status.gallery_error or "")
        assert second.pipeline.gallery.version == 2
        health = second.health(cpu=1.0, fps=10.0)
        assert health.gallery_version == 2 and health.gallery_error and "checksum" in health.gallery_error
    finally:
        second.stop()
    assert b"p-0000" not in (tmp_path / "edge-data" / "gallery.bin").read_bytes(), "the gallery is stored encrypted"


def test_outbox_cap_drops_snapshots_first_then_refuses_events(
    broker: TestBroker, tmp_path: Path, model_dir: Path, engine: FaceEngine
) -> None:
    service = _service(tmp_path, broker, model_dir, engine, max_mb=0.006)
    service.start()
    try:
        snapshot = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))[1].tobytes()
        stored = 0
        for index in range(40):
            event = FaceEvent("seen", datetime.now(UTC), float(index), index, "p-0001", None, 0.7, 0.2, 0.9, snapshot)
            stored += len(service.record_events([event]))
        stats = service.outbox.stats()
        assert stats.dropped_attachments > 0, "snapshots must go before events"
        assert stats.refused > 0 and stored == 40 - stats.refused
        health = service.health(cpu=1.0, fps=10.0)
        assert health.refused_events == stats.refused and health.dropped_snapshots == stats.dropped_attachments
        assert all(thread.is_alive() for thread in service._threads), "the service stays up"
    finally:
        service.stop()


def test_health_status_and_commands(
    broker: TestBroker, receiver: AckingReceiver, tmp_path: Path, model_dir: Path, engine: FaceEngine, faces_dir: Path
) -> None:
    camera = tmp_path / "door-view"
    camera.mkdir()
    (camera / "frame.jpg").write_bytes((faces_dir / "Barack_Obama" / "obama.jpg").read_bytes())
    service = _service(tmp_path, broker, model_dir, engine, camera=camera)
    with probe(broker, SITE.device_health(DEVICE), SITE.device_status(DEVICE)) as seen:
        service.start()
        try:

            def reports() -> list[wire.Health]:
                found = [wire.decode(m.topic, m.payload)[1] for m in seen.on(SITE.device_health(DEVICE))]
                return [h for h in found if isinstance(h, wire.Health)]

            assert seen.wait_for(lambda _: any(h.fps > 0 for h in reports()), 10), "health reports the camera's fps"
            health = reports()[-1]
            assert health.model_pack == "scrfd500m-mbf128" and health.outbox_depth >= 0 and health.uptime_s > 0
            hub = MqttLink(settings_for(broker), client_id="hub-commands")
            hub.start()
            assert hub.wait_connected(10)
            snapshot = wire.DeviceCommand(command_id=str(ULID()), at=wire.now_utc(), action="snapshot", issued_by="t")
            enrol = wire.DeviceCommand(
                command_id=str(ULID()),
                at=wire.now_utc(),
                action="enrol_capture",
                person_id="p-0042",
                count=3,
                issued_by="tui:test",
            )
            for command in (snapshot, enrol):
                hub.publish(SITE.device_command(DEVICE), command, qos=1).wait_for_publish(5)
            hub.stop()

            def captures() -> list[tuple[str, str, int, int]]:
                connection = sqlite3.connect(receiver.database)
                try:
                    return list(connection.execute("SELECT command_id, purpose, idx, final FROM captures ORDER BY idx"))
                finally:
                    connection.close()

            assert wait_until(lambda: len(captures()) == 4, 30)
            rows = captures()
            assert [(r[1], r[3]) for r in rows if r[0] == snapshot.command_id] == [("snapshot", 1)]
            assert [(r[2], r[3]) for r in rows if r[0] == enrol.command_id] == [(0, 0), (1, 0), (2, 1)]
            assert wait_until(lambda: outbox_depth(tmp_path) == 0, 10), "captures are acked and deleted"
        finally:
            service.stop()
        assert seen.wait_for(lambda ms: b'"stopped"' in ms[-1].payload if ms else False, 5) or any(
            b'"stopped"' in m.payload for m in seen.on(SITE.device_status(DEVICE))
        )


def test_sigterm_flushes_and_says_stopped(
    broker: TestBroker, receiver: AckingReceiver, tmp_path: Path, model_dir: Path
) -> None:
    with probe(broker, SITE.device_status(DEVICE)) as statuses:
        edge = EdgeProcess(write_config(tmp_path, broker, model_dir), events=50, rate=500)
        assert edge.ready.wait(60) and edge.done.wait(30)
        assert wait_until(lambda: len(receiver.stored_events()) == 50, 20)
        assert edge.terminate() == 0
        assert statuses.wait_for(lambda ms: b'"stopped"' in ms[-1].payload if ms else False, 10)
    assert integrity(tmp_path) == "ok" and outbox_depth(tmp_path) == 0
    assert (
        not (tmp_path / "edge-data" / "outbox.db-wal").exists()
        or (tmp_path / "edge-data" / "outbox.db-wal").stat().st_size == 0
    ), "a clean stop checkpoints the WAL"


def test_the_rollcall_edge_run_command(broker: TestBroker, tmp_path: Path, model_dir: Path) -> None:
    config = write_config(tmp_path, broker, model_dir)
    with probe(broker, SITE.device_status(DEVICE), SITE.device_health(DEVICE)) as seen:
        process = subprocess.Popen(
            [sys.executable, "-m", "rollcall.cli", "edge", "run", "--config", str(config)],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert seen.wait_for(lambda _: len(seen.on(SITE.device_health(DEVICE))) >= 2, 60)
            assert b'"online"' in seen.on(SITE.device_status(DEVICE))[0].payload
        finally:
            process.terminate()
            assert process.wait(30) == 0
        assert seen.wait_for(lambda _: b'"stopped"' in seen.on(SITE.device_status(DEVICE))[-1].payload, 10)


def test_edge_run_refuses_a_bad_config_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "edge.toml"
    bad.write_text('[device]\nid = "door-1"\n[camera]\nfps = -3\n')
    result = subprocess.run(
        [sys.executable, "-m", "rollcall.cli", "edge", "run", "--config", str(bad)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"{bad}:4: camera.fps" in result.stderr
