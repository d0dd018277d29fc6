"""The door device under faults, against a real Mosquitto: a full disk under its outbox, sends it cannot record."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.door.config import EdgeConfig
from edge.door.service import EdgeService
from edge.protocol import wire
from edge.protocol.config import load_config
from edge.protocol.mqtt import MqttLink
from edge.recognition.engine import build_engine
from edge.recognition.faces import FaceEngine, gallery_from_results
from edge.runtime.outbox import Outbox
from edge.runtime.publisher import OutboxPublisher
from hub.service import HubService
from rollcall.tools.receiver import AckingReceiver
from tests.conftest import REPO_ROOT
from tests.helpers.brokers import TestBroker
from tests.helpers.filesystems import fill, small_tmpfs
from tests.helpers.hub import HubStarter
from tests.helpers.mqtt import probe, settings_for
from tests.integration.test_edge_service import DEVICE, SITE, EdgeProcess, wait_until, write_config

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver(broker: TestBroker, tmp_path: Path) -> Iterator[AckingReceiver]:
    """The hub stand-in: commits events to a real SQLite file, then acks."""
    instance = AckingReceiver(settings_for(broker), tmp_path / "hub.db", client_id="hub-test")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> FaceEngine:
    """The default pack, built once."""
    return build_engine(model_dir=model_dir)


def _door_view(folder: Path, face: Path) -> Path:
    """A looping camera: a face for 1 s, then an empty door for 4.5 s (past the track's end and rejoin hold).

    With the person in the gallery every loop is one ``seen`` and one ``left`` made by the camera thread itself.
    """
    folder.mkdir()
    image = cv2.imread(str(face), cv2.IMREAD_COLOR)
    blank = np.full_like(image, 90)
    for index in range(10):
        shutil.copy(face, folder / f"0-face-{index:02d}.jpg")
    for index in range(45):
        cv2.imwrite(str(folder / f"1-empty-{index:02d}.png"), blank)
    return folder


def test_a_full_disk_keeps_the_door_running_and_it_recovers_by_itself(
    broker: TestBroker,
    receiver: AckingReceiver,
    tmp_path: Path,
    model_dir: Path,
    engine: FaceEngine,
    faces_dir: Path,
) -> None:
    face = faces_dir / "Barack_Obama" / "obama.jpg"
    camera = _door_view(tmp_path / "door-view", face)
    result = engine.enrol_photo(face, "p-0001", strict=False)
    gallery = gallery_from_results([result], engine.embedder.model_id, version=1)
    with small_tmpfs(tmp_path / "edge-data", size="3m") as data_dir:
        config = load_config(EdgeConfig, write_config(tmp_path, broker, model_dir, camera=camera), "edge", {})
        assert config.device.data_dir == data_dir
        service = EdgeService(config, engine=engine)
        service.pipeline.replace_gallery(gallery)
        with probe(broker, SITE.device_health(DEVICE)) as seen:

            def reported_errors() -> list[str]:
                found = [wire.decode(m.topic, m.payload)[1] for m in seen.on(SITE.device_health(DEVICE))]
                return [h.gallery_error or "" for h in found if isinstance(h, wire.Health)]

            service.start()
            try:
                assert wait_until(lambda: len(receiver.stored_events()) >= 2, 60), "the camera makes events"
                filler = fill(data_dir)
                assert wait_until(lambda: service.health(1.0, 1.0).refused_events > 0, 60), "refusals are counted"
                health = service.health(1.0, 1.0)
                assert health.gallery_error is not None and "cannot be written" in health.gallery_error
                assert seen.wait_for(lambda _: any("cannot be written" in e for e in reported_errors()), 10)
                camera_thread = next(t for t in service._threads if t.name == "camera")
                frames = service.status.frames
                assert wait_until(lambda: service.status.frames > frames + 10, 10) and camera_thread.is_alive()

                filler.unlink()  # space returns: no restart
                stored = len(receiver.stored_events())
                assert wait_until(lambda: len(receiver.stored_events()) >= stored + 2, 60), "events flow again"
                assert wait_until(lambda: "cannot be written" not in (service.health(1.0, 1.0).gallery_error or ""), 10)
                assert service.health(1.0, 1.0).refused_events >= health.refused_events, "the count is kept"
                assert all(thread.is_alive() for thread in service._threads)
            finally:
                service.stop()
    seqs = [seq for _, _, seq in receiver.stored_events()]
    assert len(seqs) == len(set(seqs)), "nothing stored twice"


def test_the_publisher_keeps_its_backoff_when_sends_cannot_be_recorded(
    broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    with small_tmpfs(tmp_path / "outbox-fs", size="1m") as where:
        outbox = Outbox(where / "outbox.db", max_bytes=10**9, clock=lambda: now[0])
        link = MqttLink(settings_for(broker), client_id="door-publisher")
        link.start()
        try:
            assert link.wait_connected(10)
            for _ in range(5):
                outbox.add(lambda s: (f"message-{s}", SITE.device_event(DEVICE), b"x" * 100))
            publisher = OutboxPublisher(outbox, link, resend_after_s=10.0, clock=lambda: now[0])
            filler = fill(where)
            sends: list[int] = []
            with caplog.at_level(logging.WARNING):
                # One pass every 0.5 s of the outbox clock for 10 minutes: the run loop's pace while the disk is full.
                for _ in range(1200):
                    sends.append(publisher.pump())
                    now[0] += 0.5
            # Sent at 0, then 10 s later, then backing off 20, 40, 80, 160, 160 s: 7 rounds of 5 messages in 600 s,
            # as if every send had been recorded (without the backoff it would be 60 rounds).
            rounds = [index * 0.5 for index, count in enumerate(sends) if count]
            assert rounds == [0.0, 10.0, 30.0, 70.0, 150.0, 310.0, 470.0], rounds
            assert all(count == 5 for count in sends if count)
            assert not [r for r in caplog.records if r.exc_info], "no traceback per pass"

            filler.unlink()
            publisher.pump()  # the sends made meanwhile are recorded now
            attempts = {m.message_id: m.attempts for m in outbox.due(10, 0.0, now[0] + 10**6)}
            assert attempts == {f"message-{seq}": 7 for seq in range(1, 6)}
        finally:
            link.stop()
            outbox.close()


def test_a_publisher_pass_that_fails_does_not_log_a_traceback_every_tick(
    broker: TestBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with small_tmpfs(tmp_path / "outbox-fs", size="1m") as where:
        outbox = Outbox(where / "outbox.db", max_bytes=10**9)
        link = MqttLink(settings_for(broker), client_id="door-publisher")
        link.start()
        try:
            assert link.wait_connected(10)
            for _ in range(5):
                outbox.add(lambda s: (f"message-{s}", SITE.device_event(DEVICE), b"x" * 100))
            publisher = OutboxPublisher(outbox, link, resend_after_s=0.01)
            filler = fill(where)
            stop = threading.Event()
            with caplog.at_level(logging.INFO):
                runner = threading.Thread(target=publisher.run, args=(stop, 0.01))
                runner.start()
                assert wait_until(lambda: publisher.published >= 10, 20)
                filler.unlink()
                assert wait_until(lambda: outbox.stats().write_error is None, 20)
                stop.set()
                runner.join(10)
            tracebacks = [r for r in caplog.records if r.exc_info]
            assert len(tracebacks) <= 1, [r.getMessage() for r in tracebacks]
        finally:
            link.stop()
            outbox.close()


def _hub_events(hub: HubService) -> list[tuple[str, str, int]]:
    """(event_id, epoch, seq) of every event the hub stored."""
    rows = hub.store.db.conn.execute("SELECT event_id, epoch, seq FROM events ORDER BY epoch, seq").fetchall()
    return [(str(e), str(p), int(s)) for e, p, s in rows]


def _hub_holds(hub: HubService, count: int) -> bool:
    return len(_hub_events(hub)) == count


@pytest.mark.parametrize("how", ["moved aside", "0 bytes"])
def test_a_new_outbox_never_turns_new_events_into_dead_letters(
    broker: TestBroker, start_hub: HubStarter, tmp_path: Path, model_dir: Path, how: str
) -> None:
    hub = start_hub()
    config = write_config(tmp_path, broker, model_dir)
    outbox = tmp_path / "edge-data" / "outbox.db"
    accepted: list[str] = []
    for run in range(2):
        if run == 1:
            # Between runs: the outbox's own advice for a broken file, or a file truncated to nothing.
            if how == "moved aside":
                outbox.rename(outbox.with_name("outbox.db.bad"))
            else:
                outbox.write_bytes(b"")
            for leftover in ("outbox.db-wal", "outbox.db-shm"):
                (outbox.parent / leftover).unlink(missing_ok=True)
        edge = EdgeProcess(config, events=10, rate=50)
        try:
            assert edge.ready.wait(60) and edge.done.wait(60)
            accepted += [event_id for _, event_id in edge.added]
            assert wait_until(partial(_hub_holds, hub, len(accepted)), 30), "every event reaches the hub"
        finally:
            assert edge.terminate() == 0
    stored = _hub_events(hub)
    assert sorted(e for e, _, _ in stored) == sorted(accepted), "every event stored once, none lost"
    assert hub.store.dead_letter_count() == 0
    epochs = hub.store.device_epochs(DEVICE)
    assert [seq for _, seq in epochs] == [10, 10] and len({epoch for epoch, _ in epochs}) == 2


def test_edge_run_refuses_a_garbled_outbox_saying_what_was_not_delivered(
    broker: TestBroker, tmp_path: Path, model_dir: Path
) -> None:
    config = write_config(tmp_path, broker, model_dir)  # no receiver: all 30 events stay in the outbox
    edge = EdgeProcess(config, events=30, rate=200)
    try:
        assert edge.ready.wait(60) and edge.done.wait(60)
    finally:
        assert edge.terminate() == 0
    outbox = tmp_path / "edge-data" / "outbox.db"
    connection = sqlite3.connect(outbox)
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    index_root = connection.execute(
        "SELECT rootpage FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'messages'"
    ).fetchone()[0]
    connection.close()
    with outbox.open("r+b") as file:  # the message_id index garbled; the messages themselves still readable
        file.seek((index_root - 1) * page_size)
        file.write(os.urandom(page_size))
    before = outbox.read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "rollcall.cli", "edge", "run", "--config", str(config)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "corrupt" in result.stderr and "30 undelivered messages (seq 1-30)" in result.stderr
    assert f"mv '{outbox}'" in result.stderr and "Traceback" not in result.stderr
    assert outbox.read_bytes() == before
