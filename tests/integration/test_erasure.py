"""Erasure leaves nothing: a canary (unique name, a real face) passes a real door, then every file is searched."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import uuid
from pathlib import Path

import pytest

from edge.door.config import EdgeConfig
from edge.door.gallery_store import GalleryStore
from edge.door.service import EdgeService
from edge.door.sources import FrameSource, open_source
from edge.protocol import wire
from edge.protocol.config import load_config
from edge.protocol.hub_client import HubClient
from edge.recognition.engine import build_engine
from edge.recognition.faces import FaceEngine
from hub.store import HubStore
from tests.helpers.brokers import TestBroker
from tests.helpers.hub import HubStarter
from tests.helpers.mqtt import settings_for
from tests.integration.test_edge_service import wait_until, write_config

pytestmark = pytest.mark.integration

SITE = wire.Topics("hq")


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> FaceEngine:
    """The default pack, built once."""
    return build_engine(model_dir=model_dir)


def _needles(name: str) -> dict[str, bytes]:
    return {
        "name (UTF-8)": name.encode(),
        "name (UTF-16-LE)": name.encode("utf-16-le"),
        "name (UTF-16-BE)": name.encode("utf-16-be"),
        "name as JSON text": json.dumps(name)[1:-1].encode(),
        "name's unique part": name[-10:].encode(),
    }


def _files(*folders: Path) -> list[Path]:
    return [path for folder in folders if folder.exists() for path in sorted(folder.rglob("*")) if path.is_file()]


def test_erasure_leaves_no_trace_in_any_file_the_hub_or_the_door_owns(
    broker: TestBroker, start_hub: HubStarter, engine: FaceEngine, faces_dir: Path, tmp_path: Path, model_dir: Path
) -> None:
    from hub.enrol import Enroller
    from rollcall.cli import main

    token = uuid.uuid4().hex[:10]
    name = f"Zofia Canary-Ø{token}"
    person_id = f"p-canary{uuid.uuid4().hex[:12]}"
    photos = sorted((faces_dir / "Kit_Harington").iterdir())
    assert len(photos) >= 2, "the canary's face needs photos to enrol and one to show the door"
    # The person exists before the hub starts, so the late-arrival alert names them from its first evaluation.
    hub_data = tmp_path / "hub-data"
    with HubStore(hub_data / "rollcall.db", hub_data, hub_data / "hub.key") as store:
        store.add_person(name, wire.now_utc(), person_id=person_id)
    every_day = "\n".join(
        f'{day} = ["00:00-23:59"]'
        for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    )
    hub = start_hub(
        f'[schedule]\n{every_day}\nexpected = ["{person_id}"]\n\n[alerts.late_arrival]\ngrace_min = 1\n',
        engine=engine,
        enrolment=Enroller(engine, engine.embedder.model_id),
        import_dir=faces_dir,
    )
    with HubClient(settings_for(broker), SITE, "admin-canary") as client:
        enrolled = client.call(
            "people.enrol_photos", {"person_id": person_id, "paths": [str(p) for p in photos[1:]]}, timeout=60
        )
        assert isinstance(enrolled, dict) and int(str(enrolled["enrolled"])) >= 1
    assert wait_until(lambda: any(name in a.subject for a in hub.alerting.book.alerts()), 30), "an alert names them"

    # The door: a real EdgeService whose camera shows the canary's held-out photo for four seconds.
    camera = tmp_path / "camera"
    camera.mkdir()
    for index in range(40):
        shutil.copy(photos[0], camera / f"{index:03d}{photos[0].suffix}")
    config = load_config(EdgeConfig, write_config(tmp_path, broker, model_dir, camera=camera), "edge", {})
    gallery_ready = threading.Event()

    def after_gallery(cfg: EdgeConfig) -> FrameSource:
        assert gallery_ready.wait(60), "the hub's gallery never reached the device"
        return open_source(str(cfg.camera.source), fps=cfg.camera.fps, loop=False)

    device = EdgeService(config, engine=engine, source_factory=after_gallery)
    threading.Thread(
        target=lambda: (
            gallery_ready.set() if wait_until(lambda: person_id in device.pipeline.gallery.people, 60) else None
        ),
        daemon=True,
    ).start()
    hub.mark_galleries_dirty()
    device.start()
    try:
        assert wait_until(
            lambda: (
                hub.store.db.conn.execute(
                    "SELECT count(*) FROM snapshots s JOIN events e USING (event_id) WHERE e.person_id = ?",
                    (person_id,),
                ).fetchone()[0]
                >= 1
            ),
            90,
        ), "the door saw the canary and the hub stored the event with its snapshot"
        with hub.store_lock:
            event_id = hub.store.db.conn.execute(
                "SELECT e.event_id FROM snapshots s JOIN events e USING (event_id) WHERE e.person_id = ?", (person_id,)
            ).fetchone()[0]
            snapshot = hub.store.load_snapshot(event_id)
            people, templates = hub.store.templates_for(hub.model_id)
            attendance = hub.store.db.conn.execute(
                "SELECT count(*) FROM attendance WHERE person_id = ?", (person_id,)
            ).fetchone()[0]
        assert snapshot is not None and attendance >= 1
        template = templates[people.index(person_id)].astype("<f4").tobytes()
        assert wait_until(
            lambda: (
                sqlite3.connect(tmp_path / "edge-data" / "outbox.db")
                .execute("SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM attachments)")
                .fetchone()[0]
                == 0
            ),
            60,
        ), "the door's outbox delivered everything"

        backup = tmp_path / "backups" / "rollcall-before.db"
        backup.parent.mkdir()
        assert main(["hub", "backup", str(backup), "--quiet", "--config", str(tmp_path / "hub.toml")]) == 0
        assert name.encode() in backup.read_bytes(), "the backup held the canary before the erasure"

        with HubClient(settings_for(broker), SITE, "admin-canary") as client:
            erased = client.call("people.remove", {"person_id": person_id}, timeout=60)
        assert isinstance(erased, dict) and erased["backups"] == 1 and int(str(erased["alerts"])) >= 1
        assert wait_until(lambda: person_id not in device.pipeline.gallery.people, 30), "the door's new gallery"
        assert wait_until(lambda: device.outbox.stats().depth + device.outbox.stats().attachments == 0, 30)
        picture = snapshot[len(snapshot) // 2 : len(snapshot) // 2 + 64]
        # The running door's files (its outbox's WAL is live): no copy of the canary's snapshot is left in them.
        live = [str(path) for path in _files(tmp_path / "edge-data") if picture in path.read_bytes()]
        assert not live, f"the door still holds the canary's snapshot in {live}"
    finally:
        device.stop()
    stored = GalleryStore(tmp_path / "edge-data" / "gallery.bin", tmp_path / "edge-data" / "device.key").load()
    assert stored is not None and person_id not in stored.people and name not in stored.names.values()
    assert not any(name in a.subject or name in a.message for a in hub.alerting.book.alerts())

    needles = {
        **_needles(name),
        "template bytes": template[:64],
        "snapshot bytes": picture,
    }
    searched = _files(hub_data, tmp_path / "backups", tmp_path / "edge-data", tmp_path / "broker")
    assert any(path.name == "rollcall.db" for path in searched) and any(p.name == "outbox.db" for p in searched)
    found = []
    for path in searched:
        if path.name in ("erasures.log",):  # the ledger holds the id only, by design (a restore re-applies it)
            content = path.read_bytes()
            assert name.encode() not in content and template[:64] not in content
            continue
        content = path.read_bytes()
        found += [f"{what} in {path.relative_to(tmp_path)}" for what, needle in needles.items() if needle in content]
    assert not found, "erasure left traces: " + "; ".join(found)
