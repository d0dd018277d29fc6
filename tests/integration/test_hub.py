"""The hub against a real Mosquitto and real SQLite: end to end from a door clip, crashes, garbage, the API, erasure."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ulid import ULID

from edge.door.config import EdgeConfig
from edge.door.service import EdgeService
from edge.door.sources import FrameSource, open_source
from edge.protocol import wire
from edge.protocol.config import load_config
from edge.protocol.hub_client import HubClient
from edge.protocol.mqtt import MqttLink, Received
from edge.recognition.engine import build_engine
from edge.recognition.faces import FaceEngine, enrol_people
from edge.recognition.gallery_codec import GalleryAssembler, GalleryError
from hub.service import HubService
from rollcall.tools.doorclip import GroundTruth, generate_door_clip
from tests.conftest import REPO_ROOT
from tests.helpers.brokers import TestBroker
from tests.helpers.factories import make_event
from tests.helpers.hub import HubStarter, feed, hub_config
from tests.helpers.mqtt import Collector, probe, settings_for
from tests.integration.test_edge_service import EdgeProcess, outbox_depth, wait_until, write_config

pytestmark = pytest.mark.integration

SITE = wire.Topics("hq")


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> FaceEngine:
    """The default pack, built once."""
    return build_engine(model_dir=model_dir)


@pytest.fixture
def hub(start_hub: HubStarter, engine: FaceEngine, faces_dir: Path) -> HubService:
    """A running hub service in this process; it enrols photos from the test faces folder."""
    from hub.enrol import Enroller

    return start_hub(engine=engine, enrolment=Enroller(engine, engine.embedder.model_id), import_dir=faces_dir)


def test_a_door_clip_becomes_attendance_that_matches_its_ground_truth(
    broker: TestBroker, hub: HubService, tmp_path: Path, model_dir: Path, faces_dir: Path, engine: FaceEngine
) -> None:
    video, truth_path, enrolment = generate_door_clip(faces_dir, tmp_path / "clip", seed=8, duration_s=60.0)
    truth = GroundTruth.from_json(truth_path, people_dir=faces_dir)
    now = wire.now_utc()
    for person_id, photos in enrolment.items():  # the photo folders' names are the people's ids
        hub.store.add_person(person_id.replace("_", " "), now, person_id=person_id)
        for result in enrol_people(engine, {person_id: photos}, progress=False):
            assert result.embedding is not None
            hub.store.add_template(person_id, hub.model_id, result.embedding, 0.9, f"photo:{result.path.name}", now)
    hub.mark_galleries_dirty()
    clip_start = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday morning in Berlin
    config = load_config(EdgeConfig, write_config(tmp_path, broker, model_dir, camera=video), "edge", {})
    config = config.model_copy(update={"camera": config.camera.model_copy(update={"realtime": False, "loop": False})})
    gallery_ready = threading.Event()

    def source_after_gallery(cfg: EdgeConfig) -> FrameSource:
        assert gallery_ready.wait(30), "the hub's gallery never reached the device"
        return open_source(str(video), start_at=clip_start)

    device = EdgeService(config, engine=engine, source_factory=source_after_gallery)
    threading.Thread(
        target=lambda: gallery_ready.set() if wait_until(lambda: device.pipeline.gallery.version >= 1, 30) else None,
        daemon=True,
    ).start()
    device.start()
    try:
        known = {v.person_id for v in truth.visits if v.person_id}
        assert wait_until(lambda: outbox_depth(tmp_path) == 0 and device.status.frames >= truth.frames - 1, 120)
        assert wait_until(lambda: len(hub.store.attendance(clip_start.date())) >= len(known) - 1, 30)
    finally:
        device.stop()
    rows = {row.person_id: row for row in hub.store.attendance(clip_start.date())}
    matched = 0
    for visit in truth.visits:
        if visit.person_id is None:
            continue
        row = rows.get(visit.person_id)
        if row is None:
            continue
        enter = clip_start + timedelta(seconds=visit.enter_s)
        leave = clip_start + timedelta(seconds=visit.leave_s)
        assert row.first_in is not None and enter - timedelta(seconds=1) <= row.first_in <= leave
        assert row.last_out is not None and row.first_in <= row.last_out <= leave + timedelta(seconds=5)
        assert row.first_in_event is not None
        matched += 1
    assert matched >= len(known) - 1, f"attendance for {matched} of {len(known)} visitors"
    names = {p.id for p in hub.store.list_people()}
    assert set(rows) <= names, "no stranger may get an attendance row"
    assert any(hub.store.load_snapshot(row.first_in_event or "") for row in rows.values()), "first-in photos stored"


def test_request_api_serves_people_presence_events_and_devices(
    broker: TestBroker, hub: HubService, faces_dir: Path
) -> None:
    with HubClient(settings_for(broker), SITE, "tui-test") as client:
        person = client.call("people.add", {"name": "Barack Obama"})
        assert isinstance(person, dict)
        person_id = str(person["person_id"])
        enrolled = client.call(
            "people.enrol_photos",
            {
                "person_id": person_id,
                "paths": [str(faces_dir / "Barack_Obama"), str(faces_dir / "_groups" / "insightface_t1.jpg")],
            },
            timeout=60,
        )
        assert isinstance(enrolled, dict) and enrolled["enrolled"] == 4
        refused = [p for p in enrolled["photos"] if isinstance(p, dict) and not p["ok"]]
        assert len(refused) == 1 and "faces" in str(refused[0]["reason"])
        people = client.call("people.list")
        assert people == [
            {"person_id": person_id, "name": "Barack Obama", "templates": 4, "created_at": people[0]["created_at"]}
        ]
        presence = client.call("presence.get")
        assert presence == [
            {"person_id": person_id, "name": "Barack Obama", "state": "unknown", "since": None, "door": None}
        ]
        assert client.call("events.recent", {"limit": 5}) == []
        assert client.call("devices.list") == []
        with pytest.raises(Exception, match="unknown_method"):
            client.call("people.fly")
        with pytest.raises(Exception, match="bad_params"):
            client.call("attendance.day", {"date": "yesterday"})
    audit = hub.store.audit_log(person_id)
    assert {row["action"] for row in audit} >= {"person.add", "person.enrol_photos"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    leaf=st.sampled_from(["event", "snapshot", "capture", "status", "health"]),
    junk=st.one_of(
        st.binary(max_size=300),
        st.dictionaries(
            st.text(max_size=10), st.one_of(st.none(), st.integers(), st.text(max_size=20)), max_size=6
        ).map(lambda d: __import__("json").dumps(d).encode()),
    ),
)
def test_malformed_payloads_are_dead_lettered_and_the_hub_stays_up(hub: HubService, leaf: str, junk: bytes) -> None:
    before = hub.store.dead_letter_count()
    hub.handle_batch([(Received(f"rollcall/hq/device/door-9/{leaf}", junk, 1, False), 0.0)])
    assert hub.store.dead_letter_count() == before + 1
    good = make_event(device="door-9", seq=1_000_000 + before, at=wire.now_utc(), person_id="p-unknown", score=0.7)
    feed(hub, good)
    assert hub.store.get_event(good.event_id) is not None, "the hub keeps working after garbage"


def test_erasing_a_person_reaches_the_devices_galleries(broker: TestBroker, hub: HubService, faces_dir: Path) -> None:
    galleries = Collector()
    device_link = MqttLink(settings_for(broker), client_id="gallery-watch", on_message=galleries)
    device_link.subscribe(SITE.device_gallery("door-1"))
    device_link.subscribe(SITE.device_gallery_chunk("door-1", 0).rsplit("/", 1)[0] + "/+")
    device_link.start()
    hub.store.upsert_device("door-1", role="entrance")
    try:
        with HubClient(settings_for(broker), SITE, "tui-erase") as client:
            canary = client.call("people.add", {"name": "Canary Zyx"})["person_id"]
            client.call(
                "people.enrol_photos", {"person_id": canary, "paths": [str(faces_dir / "Katy_Perry")]}, timeout=60
            )
            hub.mark_galleries_dirty()

            def latest_gallery_people() -> list[str] | None:
                assembler = GalleryAssembler(hub.model_id, hub.embedding_size)
                newest = None
                for message in list(galleries.messages):
                    _, payload = wire.decode(message.topic, message.payload)
                    if not isinstance(payload, (wire.GalleryManifest, wire.GalleryChunk)):
                        continue
                    try:
                        result = assembler.feed(payload)
                    except GalleryError:
                        continue
                    if result is not None:
                        newest = result.people
                return newest

            assert wait_until(lambda: canary in (latest_gallery_people() or []), 20)
            client.call("people.remove", {"person_id": canary}, timeout=60)
            assert wait_until(lambda: latest_gallery_people() == [], 20)
    finally:
        device_link.stop()
    database = Path(hub.config.hub.database)
    for path in [database, database.with_name(database.name + "-wal")]:
        if path.exists():
            assert b"Canary Zyx" not in path.read_bytes()


def test_sigkill_of_the_hub_at_20_moments_loses_and_doubles_nothing(
    broker: TestBroker, tmp_path: Path, model_dir: Path
) -> None:
    config = hub_config(tmp_path, broker, model_dir)
    edge = EdgeProcess(write_config(tmp_path, broker, model_dir), events=100_000, rate=150)
    rng = random.Random(20)
    try:
        assert edge.ready.wait(60)
        for _ in range(20):
            hub_process = subprocess.Popen(
                [sys.executable, "-m", "rollcall.cli", "--log-level", "WARNING", "hub", "run", "--config", str(config)],
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            )
            threading.Event().wait(rng.uniform(1.5, 3.5))
            hub_process.send_signal(signal.SIGKILL)
            hub_process.wait(10)
        stored_while_crashing = (
            sqlite3.connect(tmp_path / "hub-data" / "rollcall.db").execute("SELECT COUNT(*) FROM events").fetchone()[0]
        )
        assert stored_while_crashing > 100, "the killed hubs must have been ingesting"
        final = subprocess.Popen(
            [sys.executable, "-m", "rollcall.cli", "--log-level", "WARNING", "hub", "run", "--config", str(config)],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert edge.terminate() == 0  # stop producing; what it accepted stays in its outbox until acked
        drain = EdgeProcess(write_config(tmp_path, broker, model_dir))
        assert drain.ready.wait(60)
        assert wait_until(lambda: outbox_depth(tmp_path) == 0, 90), "the outbox did not drain into the hub"
        assert drain.terminate() == 0
        final.terminate()
        assert final.wait(20) == 0
    finally:
        if edge.process.poll() is None:
            edge.kill()
    connection = sqlite3.connect(tmp_path / "hub-data" / "rollcall.db")
    seqs = [row[0] for row in connection.execute("SELECT seq FROM events WHERE device = 'door-1' ORDER BY seq")]
    connection.close()
    accepted = {seq for seq, _ in edge.added}
    assert len(seqs) == len(set(seqs)), "an event was stored twice"
    assert seqs == list(range(1, len(seqs) + 1)), "an event was lost"
    assert accepted <= set(seqs)


def test_people_and_report_commands(
    hub: HubService, tmp_path: Path, faces_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rollcall.cli import main

    config = str(tmp_path / "hub.toml")
    photos = [str(faces_dir / "Barack_Obama" / "obama.jpg"), str(faces_dir / "_groups" / "deepface_couple.jpg")]
    assert main(["people", "add", "Barack Obama", *photos, "--config", config]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 photos enrolled" in out and "faces" in out  # the couple photo is refused with its reason
    assert main(["people", "list", "--config", config]) == 0
    assert "Barack Obama" in capsys.readouterr().out
    person_id = hub.store.list_people()[0].id
    event = make_event(
        device="door-1", seq=1, at=datetime(2026, 11, 23, 8, 0, tzinfo=UTC), person_id=person_id, score=0.7
    )
    feed(hub, event)
    assert main(["report", "attendance", "--from", "2026-11-23", "--format", "csv", "--config", config]) == 0
    report = capsys.readouterr().out.splitlines()
    assert report[0].startswith("day,person_id,name,first_in")
    assert report[1].startswith(f"2026-11-23,{person_id},Barack Obama,2026-11-23 09:00")  # site-local (Berlin)
    assert main(["report", "events", "--last", "5", "--config", config]) == 0
    assert person_id in capsys.readouterr().out
    assert main(["people", "remove", "Barack Obama", "--yes", "--config", config]) == 0
    assert "erased" in capsys.readouterr().out
    assert hub.store.list_people() == []
    assert main(["people", "add", "Nobody", str(tmp_path / "missing.jpg"), "--config", config]) == 2
    assert "no such photo" in capsys.readouterr().err


def test_device_enrolment_captures_become_templates_and_presence_survives_a_restart(
    hub: HubService, faces_dir: Path, tmp_path: Path, broker: TestBroker, model_dir: Path, engine: FaceEngine
) -> None:
    from ulid import ULID

    now = wire.now_utc()
    person_id = hub.store.add_person("Barack Obama", now)
    crop = (faces_dir / "Barack_Obama" / "obama.jpg").read_bytes()
    capture = wire.Capture(
        capture_id=str(ULID()),
        device="door-1",
        command_id=str(ULID()),
        at=now,
        purpose="enrol",
        person_id=person_id,
        index=0,
        total=1,
        final=True,
        quality=0.9,
        content_type="image/jpeg",
        width=100,
        height=100,
        data=crop,
    )
    feed(hub, capture)
    assert hub.enrolment.wait_idle(60), "the enrolment thread did not finish the capture"
    assert hub.store.template_counts(hub.model_id) == {person_id: 1}
    event = make_event(device="door-1", seq=1, at=now - timedelta(minutes=1), person_id=person_id, score=0.7)
    feed(hub, event)
    assert [e.state for e in hub.presence_payload(now).people] == ["in"]
    hub.stop()
    again = HubService(
        hub.config, hub.store, model_id=hub.model_id, embedding_size=hub.embedding_size
    )  # a restarted hub on the same database
    entry = again.presence_payload(now).people[0]
    assert (entry.state, entry.door, entry.since) == ("in", "door-1", event.at)


def _activity(seq: int, at: datetime, idle: bool = False) -> wire.Activity:
    return wire.Activity(
        event_id=str(ULID()),
        agent="lab-pc-07",
        seq=seq,
        at=at,
        user="student7",
        session="start" if seq == 1 else None,
        intervals=[wire.ActivityInterval(state="idle" if idle else "active", start=at - timedelta(minutes=1), end=at)],
        window=wire.WindowInfo(title="report.odt - LibreOffice Writer", app="libreoffice"),
        files=[wire.FileChange(path="coursework/report.odt", change="modified", at=at)],
    )


def _acked_ids(messages: list[Received]) -> set[str]:
    decoded = [wire.decode(m.topic, m.payload)[1] for m in messages]
    return {i for ack in decoded if isinstance(ack, wire.Ack) for i in ack.event_ids}


def test_workstation_activity_is_stored_once_acked_and_served(broker: TestBroker, hub: HubService) -> None:
    now = wire.now_utc()
    first, second = _activity(1, now - timedelta(minutes=5)), _activity(2, now, idle=True)
    with probe(broker, SITE.agent_ack("lab-pc-07")) as acks:
        sender = MqttLink(settings_for(broker), client_id="agent-lab-pc-07")
        sender.start()
        assert sender.wait_connected(10)
        for activity in (first, second, first):  # the first one twice: a resend after a lost ack
            sender.publish(SITE.agent_activity("lab-pc-07"), activity, qos=1).wait_for_publish(5)
        sender.stop()
        # One ack per batch: the three may arrive in one batch (one ack) or in several.
        assert acks.wait_for(lambda ms: _acked_ids(ms) >= {first.event_id, second.event_id}, 10)
    assert _acked_ids(acks.messages) == {first.event_id, second.event_id}
    with HubClient(settings_for(broker), SITE, "tui-agents") as client:
        (agent,) = client.call("agents.list")
        assert (agent["id"], agent["state"], agent["window_title"]) == (
            "lab-pc-07",
            "idle",
            "report.odt - LibreOffice Writer",
        )
        assert [row["seq"] for row in client.call("agents.activity", {"agent": "lab-pc-07"})] == [2, 1]
        files = client.call("agents.files", {"agent": "lab-pc-07"})
        assert [f["path"] for f in files] == ["coursework/report.odt"] * 2


def test_devices_commands_against_a_running_hub(
    start_hub: HubStarter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rollcall devices list|rename|retire|set-role` ask the running hub; refusals exit 1 with the hub's reason."""
    from rollcall.cli import main

    hub = start_hub('[[cameras]]\ndevice = "door-1"\nrole = "entrance"\n')
    now = wire.now_utc()
    with hub.store_lock:
        hub.store.upsert_device("door-7", role="both", status="online", last_seen=now)
        hub.store.upsert_device("door-8", role="both", status="online", last_seen=now - timedelta(hours=2))
    config = str(tmp_path / "hub.toml")
    assert main(["devices", "rename", "door-7", "Back door", "--config", config]) == 0
    assert json.loads(capsys.readouterr().out) == {"device": "door-7", "name": "Back door"}
    assert main(["devices", "set-role", "door-7", "exit", "--config", config]) == 0
    assert main(["devices", "retire", "door-8", "--config", config]) == 0
    capsys.readouterr()
    assert main(["devices", "list", "--config", config]) == 0
    listing = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "exit" in listing["door-7"] and "retired" not in listing["door-7"] and "SILENT" not in listing["door-7"]
    assert "retired" in listing["door-8"] and "SILENT" not in listing["door-8"]  # retired is never silent
    assert main(["devices", "retire", "door-8", "--undo", "--config", config]) == 0
    assert json.loads(capsys.readouterr().out)["retired_at"] is None
    assert main(["devices", "list", "--config", config]) == 0
    assert "SILENT" in next(line for line in capsys.readouterr().out.splitlines() if line.startswith("door-8"))
    with hub.store_lock:
        seven, eight = hub.store.get_device("door-7"), hub.store.get_device("door-8")
    assert seven is not None and (seven.name, seven.role) == ("Back door", "exit")
    assert eight is not None and eight.retired_at is None
    assert main(["devices", "set-role", "door-1", "exit", "--config", config]) == 1
    assert "[[cameras]]" in capsys.readouterr().err
    assert main(["devices", "retire", "door-404", "--config", config]) == 1
    assert "no device 'door-404'" in capsys.readouterr().err
