"""The hub's store: migrations, WAL, idempotent events, encryption at rest, erasure, key rotation, retention."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import sqlite_utils
from cryptography.fernet import Fernet, InvalidToken
from ulid import ULID

from edge.protocol import wire
from edge.runtime.keys import read_keys
from hub.config import HubSettings
from hub.store import (
    APPLICATION_ID,
    MIGRATIONS,
    HubStore,
    NotFound,
    ReceivedEvent,
    StoreError,
    migrate,
    open_database,
)
from hub.store.schema import transaction
from tests.helpers.factories import make_event

NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
MODEL = "scrfd500m:mobilefacenet-128"
DEVICE = "door-1"
CANARY = "Canary Zyx"
# A JPEG-looking byte string that occurs nowhere by chance.
JPEG = b"\xff\xd8\xff\xe0" + b"rollcall-snapshot-canary-" + os.urandom(64) + b"\xff\xd9"


def _vector(seed: int, size: int = 128) -> npt.NDArray[np.float32]:
    rows = np.random.default_rng(seed).normal(size=size).astype(np.float32)
    return rows / np.linalg.norm(rows)


def _event(
    seq: int,
    at: datetime = NOW,
    person_id: str | None = None,
    *,
    device: str = DEVICE,
    has_snapshot: bool = False,
    event_id: str | None = None,
) -> wire.Event:
    return make_event(
        event_id=event_id or str(ULID.from_datetime(at)),
        device=device,
        seq=seq,
        at=at,
        person_id=person_id,
        score=0.71 if person_id else 0.2,
        margin=0.3,
        quality=0.9,
        has_snapshot=has_snapshot,
    )


def _received(*events: wire.Event, at: datetime = NOW) -> list[ReceivedEvent]:
    return [ReceivedEvent(event, at + timedelta(seconds=1), clock_skew_s=0.5) for event in events]


def _capture(person_id: str | None, *, purpose: str = "enrol", at: datetime = NOW, data: bytes = JPEG) -> wire.Capture:
    return wire.Capture.model_validate(
        {
            "capture_id": str(ULID.from_datetime(at)),
            "device": DEVICE,
            "command_id": str(ULID.from_datetime(at)),
            "at": at,
            "purpose": purpose,
            "person_id": person_id,
            "index": 0,
            "total": 1,
            "final": True,
            "content_type": "image/jpeg",
            "width": 112,
            "height": 112,
            "data": data,
        }
    )


class Paths:
    """Where one test's hub keeps its files."""

    def __init__(self, root: Path) -> None:
        self.database = root / "db" / "hub.db"
        self.data_dir = root / "data"
        self.key_file = root / "etc" / "hub.key"

    def open(self) -> HubStore:
        return HubStore(self.database, self.data_dir, self.key_file)

    def db_bytes(self) -> bytes:
        """The database file and its WAL, as they are on disk now."""
        wal = self.database.with_name(self.database.name + "-wal")
        return self.database.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    def data_bytes(self) -> bytes:
        """Every file under the data folder, concatenated."""
        return b"".join(p.read_bytes() for p in sorted(self.data_dir.rglob("*")) if p.is_file())


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path)


@pytest.fixture
def store(paths: Paths) -> Iterator[HubStore]:
    instance = paths.open()
    try:
        yield instance
    finally:
        instance.close()


def _schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    conn.close()
    return [(t, n, s or "") for t, n, s in rows]


# --- migrations and pragmas ------------------------------------------------------------------------------------


def test_migrate_from_empty_creates_every_table_at_the_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    db = open_database(path)
    try:
        conn = db.conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) >= 2
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert set(db.table_names()) >= {
            "people",
            "templates",
            "devices",
            "events",
            "snapshots",
            "presence",
            "attendance",
            "dead_letters",
            "audit",
            "captures",
            "meta",
        }
        fks = {
            (fk.table, fk.column, fk.other_table)
            for name in ("templates", "snapshots")
            for fk in db.table(name).foreign_keys
        }
        assert fks == {("templates", "person_id", "people"), ("snapshots", "event_id", "events")}
        assert "model_pack" in db.table("devices").columns_dict
    finally:
        db.close()
    before = _schema(path)
    again = open_database(path)  # opening again changes nothing
    try:
        assert migrate(again) == len(MIGRATIONS)
    finally:
        again.close()
    assert _schema(path) == before


@pytest.mark.parametrize("start", range(1, len(MIGRATIONS)))
def test_migrate_from_every_earlier_version_keeps_rows(tmp_path: Path, start: int) -> None:
    old_path, fresh_path = tmp_path / "old.db", tmp_path / "fresh.db"
    db = open_database(old_path, migrations=MIGRATIONS[:start])
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] == start
    stamp = NOW.isoformat(timespec="microseconds")
    with db.conn:
        db.conn.execute(
            "INSERT INTO people (id, name, created_at, updated_at) VALUES ('p-old', 'Old Timer', ?, ?)", (stamp, stamp)
        )
        db.conn.execute("INSERT INTO devices (id, name, role) VALUES ('door-9', 'Back door', 'exit')")
        db.conn.execute(
            "INSERT INTO events (event_id, device, seq, at, received_at, type, person_id, score, margin, track, "
            "quality) VALUES ('01JDX0000000000000000000AA', 'door-9', 7, ?, ?, 'seen', 'p-old', 0.8, 0.2, 1, 0.9)",
            (stamp, stamp),
        )
    db.close()

    upgraded = open_database(old_path)
    try:
        conn = upgraded.conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("SELECT id, name FROM people").fetchall() == [("p-old", "Old Timer")]
        assert conn.execute("SELECT id, role, model_pack FROM devices").fetchall() == [("door-9", "exit", None)]
        assert conn.execute("SELECT event_id, seq, person_id FROM events").fetchall() == [
            ("01JDX0000000000000000000AA", 7, "p-old")
        ]
        assert "idx_events_at" in {index.name for index in upgraded.table("events").indexes}
    finally:
        upgraded.close()
    open_database(fresh_path).close()
    assert _schema(old_path) == _schema(fresh_path)  # an upgraded database is the same as a new one

    with HubStore(old_path, tmp_path / "data", tmp_path / "hub.key") as store:  # and the store works on it
        assert [p.name for p in store.list_people()] == ["Old Timer"]
        store.upsert_device("door-9", model_pack="mobilefacenet-128")
        device = store.get_device("door-9")
        assert device is not None and device.model_pack == "mobilefacenet-128"


def test_a_failing_migration_leaves_the_database_at_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    open_database(path, migrations=MIGRATIONS[:1]).close()

    def broken(db: sqlite_utils.Database) -> None:
        MIGRATIONS[1](db)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        open_database(path, migrations=[MIGRATIONS[0], broken])
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        columns = [row[1] for row in conn.execute("PRAGMA table_info(devices)")]
    conn.close()
    assert "model_pack" not in columns  # the half-done step was rolled back


def test_refuses_newer_foreign_and_unversioned_databases(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    open_database(newer).close()
    with pytest.raises(StoreError, match="newer than the 1 this build knows"):
        open_database(newer, migrations=MIGRATIONS[:1])

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE stuff (x)")
    conn.close()
    with pytest.raises(StoreError, match="no rollcall schema version"):
        open_database(foreign)

    other_app = tmp_path / "other.db"
    with sqlite3.connect(other_app) as conn:
        conn.execute("PRAGMA application_id = 1234")
    conn.close()
    with pytest.raises(StoreError, match="not a rollcall hub database"):
        open_database(other_app)


def test_database_runs_in_wal_with_full_sync_and_foreign_keys(store: HubStore, paths: Paths) -> None:
    conn = store.db.conn
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    other = sqlite3.connect(paths.database)  # the journal mode is stored in the file: a new connection sees it
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()
    store.add_person("Someone", NOW)
    for name in (paths.database.name, paths.database.name + "-wal"):  # SQLite gives the WAL the database's mode
        assert stat.S_IMODE(paths.database.with_name(name).stat().st_mode) == 0o600
    with pytest.raises(sqlite3.IntegrityError):  # foreign keys are enforced
        conn.execute("INSERT INTO presence (person_id, state, updated_at) VALUES ('p-nobody', 'in', 'x')")
    conn.rollback()
    with pytest.raises(sqlite3.IntegrityError, match="role must be one of"):  # the role check is in the database
        conn.execute("INSERT INTO devices (id, role) VALUES ('door-x', 'sideways')")
    conn.rollback()


def test_from_settings_uses_the_configured_paths(paths: Paths) -> None:
    settings = HubSettings(database=paths.database, data_dir=paths.data_dir, key_file=paths.key_file)
    with HubStore.from_settings(settings) as store:
        assert store.schema_version == len(MIGRATIONS)
    assert paths.database.exists() and paths.key_file.exists() and paths.data_dir.is_dir()


# --- events ----------------------------------------------------------------------------------------------------


def test_inserting_events_is_idempotent(store: HubStore) -> None:
    first = [_event(1), _event(2), _event(3)]
    assert store.insert_events(_received(*first)) == [e.event_id for e in first]
    fourth = _event(4)
    # a resent batch plus one new event, which also appears twice in the same batch
    assert store.insert_events(_received(*first, fourth, fourth)) == [fourth.event_id]
    assert store.insert_events(_received(*first)) == []
    rows = store.db.conn.execute("SELECT seq FROM events ORDER BY seq").fetchall()
    assert rows == [(1,), (2,), (3,), (4,)]
    assert store.dead_letter_count() == 0
    stored = store.get_event(first[0].event_id)
    assert stored is not None and stored["received_at"] == (NOW + timedelta(seconds=1)).isoformat(
        timespec="microseconds"
    )
    assert stored["clock_skew_s"] == 0.5


def test_a_reused_seq_goes_to_the_dead_letters_with_the_reason(store: HubStore) -> None:
    original, impostor = _event(5), _event(5)
    assert original.event_id != impostor.event_id
    assert store.insert_events(_received(original, impostor)) == [original.event_id]
    [letter] = store.dead_letters()
    assert "seq 5" in letter.reason and original.event_id in letter.reason
    assert wire.decode_as(wire.Event, letter.payload) == impostor
    raw = store.db.conn.execute("SELECT payload FROM dead_letters").fetchone()[0]
    assert impostor.event_id.encode() not in raw  # dead-letter payloads are encrypted too


def test_advance_delivered_follows_contiguous_seqs(store: HubStore) -> None:
    times = [NOW + timedelta(minutes=i) for i in range(6)]
    store.insert_events(_received(*(_event(seq, times[seq]) for seq in (1, 2, 3, 5))))
    assert store.advance_delivered(DEVICE) == times[3]  # 4 is missing
    device = store.get_device(DEVICE)
    assert device is not None and device.delivered_seq == 3
    store.insert_events(_received(_event(4, times[4])))
    assert store.advance_delivered(DEVICE) == times[5]
    assert store.advance_delivered("door-empty") is None
    # A device whose clock stepped back: delivered_through never goes backwards.
    store.insert_events(_received(_event(1, times[5], device="door-2"), _event(2, times[0], device="door-2")))
    assert store.advance_delivered("door-2") == times[5]


# --- people and templates --------------------------------------------------------------------------------------


def test_people_crud(store: HubStore) -> None:
    pid = store.add_person("  Ada Lovelace ", NOW)
    assert pid.startswith("p-") and wire.check_id(pid) == pid and pid == pid.lower()
    assert store.add_person("Grace Hopper", NOW, person_id="grace") == "grace"
    with pytest.raises(StoreError, match="taken"):
        store.add_person("Someone", NOW, person_id="grace")
    with pytest.raises(ValueError, match="not valid"):
        store.add_person("Someone", NOW, person_id="has space")
    with pytest.raises(ValueError, match="name"):
        store.add_person("   ", NOW)
    store.rename_person(pid, "Augusta Ada King", NOW + timedelta(hours=1))
    person = store.get_person(pid)
    assert person is not None
    assert (person.name, person.created_at, person.updated_at) == ("Augusta Ada King", NOW, NOW + timedelta(hours=1))
    assert [p.name for p in store.list_people()] == ["Augusta Ada King", "Grace Hopper"]
    with pytest.raises(NotFound):
        store.rename_person("p-nobody", "X", NOW)
    with pytest.raises(NotFound):
        store.add_template("p-nobody", MODEL, _vector(0), 0.9, "photo:x.jpg", NOW)
    assert store.get_person("p-nobody") is None


def test_templates_are_encrypted_at_rest_and_decrypt_back(store: HubStore, paths: Paths) -> None:
    ada, bob = store.add_person("Ada", NOW), store.add_person("Bob", NOW)
    vectors = {ada: [_vector(1), _vector(2)], bob: [_vector(3)]}
    for pid, rows in vectors.items():
        for i, vector in enumerate(rows):
            store.add_template(pid, MODEL, vector, 0.8, f"photo:{i}.jpg", NOW)
    store.add_template(bob, "other-model", _vector(4, size=512), None, "capture:01JDX0000000000000000000AA", NOW)

    labels, matrix = store.templates_for(MODEL)
    expected = sorted((pid, i) for pid, rows in vectors.items() for i in range(len(rows)))
    assert labels == [pid for pid, _ in expected]
    np.testing.assert_array_equal(matrix, np.stack([vectors[pid][i] for pid, i in expected]))
    assert matrix.dtype == np.float32
    assert store.templates_for("other-model")[1].shape == (1, 512)
    assert store.templates_for("no-such-model")[1].shape == (0, 0)
    assert store.template_counts(MODEL) == {ada: 2, bob: 1}

    on_disk = paths.db_bytes()
    assert b"Ada" in on_disk  # the search sees plain data (names are not encrypted) ...
    for rows in vectors.values():
        for vector in rows:
            assert vector.astype("<f4").tobytes() not in on_disk  # ... but not a single template
            assert vector.astype("<f4").tobytes()[:32] not in on_disk
    key = read_keys(paths.key_file)[0]
    token = store.db.conn.execute("SELECT embedding FROM templates ORDER BY id LIMIT 1").fetchone()[0]
    assert Fernet(key).decrypt(token) == vectors[ada][0].astype("<f4").tobytes()

    with pytest.raises(ValueError, match="finite"):
        store.add_template(ada, MODEL, np.full(128, np.nan, dtype=np.float32), 0.5, "photo:x", NOW)
    with pytest.raises(ValueError, match="source"):
        store.add_template(ada, MODEL, _vector(5), 0.5, "webcam", NOW)


# --- pictures --------------------------------------------------------------------------------------------------


def test_snapshot_files_are_encrypted_with_mode_0600(store: HubStore, paths: Paths) -> None:
    event = _event(1, datetime(2026, 3, 4, 5, 6, tzinfo=UTC), has_snapshot=True)
    assert store.save_snapshot(event.event_id, JPEG, NOW) == "unknown_event"  # before its event: not stored, no ack
    store.insert_events(_received(event))
    assert store.save_snapshot(event.event_id, JPEG, NOW) == "stored"
    assert store.save_snapshot(event.event_id, JPEG, NOW) == "duplicate"

    path = paths.data_dir / "snapshots" / "2026" / "03" / f"{event.event_id}.jpg.enc"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_bytes()
    assert JPEG not in token and b"rollcall-snapshot-canary" not in token
    assert Fernet(read_keys(paths.key_file)[0]).decrypt(token) == JPEG
    assert store.load_snapshot(event.event_id) == JPEG
    assert store.load_snapshot(_event(2).event_id) is None
    stored = store.get_event(event.event_id)
    assert stored is not None and stored["snapshot_file"] == f"snapshots/2026/03/{event.event_id}.jpg.enc"

    pid = store.add_person("Enrollee", NOW)
    capture = _capture(pid)
    assert store.save_capture(capture, NOW) == "stored"
    assert store.save_capture(capture, NOW) == "duplicate"
    assert store.save_capture(_capture("p-unknown"), NOW) == "discarded"
    assert store.load_capture(capture.capture_id) == JPEG
    [capture_file] = (paths.data_dir / "captures").rglob("*.jpg.enc")
    assert stat.S_IMODE(capture_file.stat().st_mode) == 0o600
    assert JPEG not in capture_file.read_bytes()


# --- erasure ---------------------------------------------------------------------------------------------------


def test_erasing_a_person_leaves_no_trace_in_the_database_wal_or_files(store: HubStore, paths: Paths) -> None:
    canary = store.add_person(CANARY, NOW)
    other = store.add_person("Other Person", NOW)
    store.audit("admin", "person.add", canary, {"name": CANARY}, NOW)
    store.rename_person(canary, CANARY + " Jr", NOW)
    store.rename_person(canary, CANARY, NOW)
    store.audit("admin", "person.rename", canary, {"from": CANARY + " Jr", "to": CANARY}, NOW)
    vectors = [_vector(10), _vector(11)]
    for vector in vectors:
        store.add_template(canary, MODEL, vector, 0.9, "photo:canary.jpg", NOW)
    store.add_template(other, MODEL, _vector(12), 0.9, "photo:other.jpg", NOW)
    for seed in range(20):  # enough ciphertext that erasing it frees whole pages
        store.add_template(canary, "big-model", _vector(100 + seed, size=1024), 0.9, "photo:canary.jpg", NOW)
    canary_events = [_event(seq, NOW + timedelta(minutes=seq), canary, has_snapshot=True) for seq in (1, 2)]
    other_event = _event(3, NOW + timedelta(minutes=3), other, has_snapshot=True)
    store.insert_events(_received(*canary_events, other_event))
    canary_jpegs = [JPEG + bytes([i]) * 32 for i in range(2)]
    for event, jpeg in zip(canary_events, canary_jpegs, strict=True):
        assert store.save_snapshot(event.event_id, jpeg, NOW) == "stored"
    other_jpeg = b"\xff\xd8other-person-snapshot\xff\xd9"
    store.save_snapshot(other_event.event_id, other_jpeg, NOW)
    enrol = _capture(canary, data=b"\xff\xd8canary-enrolment-crop\xff\xd9")
    store.save_capture(enrol, NOW)
    store.set_presence(canary, "in", NOW, DEVICE, canary_events[-1].event_id, NOW)
    store.set_attendance(canary, NOW.date(), NOW, None, 3600.0, "present", NOW)
    store.set_presence(other, "in", NOW, DEVICE, other_event.event_id, NOW)
    store.record_dead_letter("rollcall/hq/device/door-1/event", "bad", f'{{"person_id":"{canary}"}}'.encode(), NOW)
    store.record_dead_letter("rollcall/hq/device/door-1/event", "bad", b'{"unrelated":true}', NOW)

    # The first 256 bytes of each ciphertext: a large one continues on overflow pages, so only its head is contiguous.
    template_tokens = [
        row[0][:256] for row in store.db.conn.execute("SELECT embedding FROM templates WHERE person_id = ?", (canary,))
    ]
    picture_tokens = [p.read_bytes() for p in paths.data_dir.rglob("*.enc")]
    # Controls: before the erasure the search finds the canary, so "not found" afterwards means something. The WAL
    # is checkpointed first, as it is in a running hub, so the name sits in the main file's pages as well.
    store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert CANARY.encode() in paths.database.read_bytes()
    store.audit("admin", "person.note", canary, {"name": CANARY}, NOW)  # and in fresh WAL frames
    assert CANARY.encode() in paths.database.with_name(paths.database.name + "-wal").read_bytes()
    assert all(token in paths.db_bytes() for token in template_tokens)
    assert len(picture_tokens) == 4 and all(token in paths.data_bytes() for token in picture_tokens)

    report = store.erase_person(canary, NOW + timedelta(days=1), actor="admin")
    assert (report.templates, report.snapshots, report.captures, report.events) == (22, 2, 1, 2)
    assert report.dead_letters == 1 and report.audit_redacted >= 2
    assert report.wal_truncated

    needles = [CANARY.encode(), *(v.astype("<f4").tobytes() for v in vectors), *canary_jpegs, *template_tokens]
    needles += [token for token in picture_tokens if Fernet(read_keys(paths.key_file)[0]).decrypt(token) != other_jpeg]
    wal = paths.database.with_name(paths.database.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert store.db.conn.execute("PRAGMA freelist_count").fetchone()[0] == 0  # VACUUM left no free page behind
    for haystack in (paths.db_bytes(), paths.data_bytes()):
        for needle in needles:
            assert needle not in haystack
    store.close()
    for haystack in (paths.db_bytes(), paths.data_bytes()):  # and nothing comes back when the connection closes
        assert CANARY.encode() not in haystack

    with paths.open() as reopened:
        tombstone = reopened.get_person(canary)
        assert tombstone is not None and tombstone.name is None and tombstone.erased_at == NOW + timedelta(days=1)
        assert [p.id for p in reopened.list_people()] == [other]
        assert reopened.templates_for(MODEL)[0] == [other]
        assert reopened.load_snapshot(other_event.event_id) == other_jpeg  # other people are untouched
        for event in canary_events:
            assert reopened.load_snapshot(event.event_id) is None
            row = reopened.get_event(event.event_id)
            assert row is not None
            assert (row["person_id"], row["score"], row["snapshot_file"], row["redacted"]) == (None, None, None, 1)
        assert [p.person_id for p in reopened.presence()] == [other]
        assert reopened.attendance(NOW.date()) == []
        assert [d.payload for d in reopened.dead_letters()] == [b'{"unrelated":true}']
        erase_row = reopened.audit_log(canary)[0]
        assert erase_row["action"] == "person.erase" and erase_row["actor"] == "admin"
        assert erase_row["details"]["templates"] == 22
        assert all(CANARY not in str(row["details"]) for row in reopened.audit_log())
        # A device with a stale gallery still naming the person: the event is kept without the person.
        late = _event(9, NOW + timedelta(days=2), canary, has_snapshot=True)
        assert reopened.insert_events(_received(late)) == [late.event_id]
        row = reopened.get_event(late.event_id)
        assert row is not None and (row["person_id"], row["score"]) == (None, None)
        assert reopened.save_snapshot(late.event_id, JPEG, NOW) == "discarded"
        with pytest.raises(NotFound):
            reopened.add_template(canary, MODEL, _vector(13), 0.9, "photo:x", NOW)
        with pytest.raises(StoreError, match="taken"):
            reopened.add_person("New", NOW, person_id=canary)
        with pytest.raises(NotFound):
            reopened.erase_person("p-never-existed", NOW)


# --- keys ------------------------------------------------------------------------------------------------------


def test_rotate_key_reencrypts_everything_and_the_old_key_alone_no_longer_decrypts(paths: Paths) -> None:
    with paths.open() as store:
        pid = store.add_person("Rota", NOW)
        store.add_template(pid, MODEL, _vector(20), 0.9, "photo:r.jpg", NOW)
        event = _event(1, person_id=pid, has_snapshot=True)
        store.insert_events(_received(event))
        store.save_snapshot(event.event_id, JPEG, NOW)
        store.record_dead_letter("t", "bad", b"dead-letter-body", NOW)
        [old_key] = read_keys(paths.key_file)
        old = Fernet(old_key)

        assert store.rotate_key() == (2, 1)
        keys = read_keys(paths.key_file)
        assert len(keys) == 2 and keys[1] == old_key and keys[0] != old_key
        assert stat.S_IMODE(paths.key_file.stat().st_mode) == 0o600

        def tokens() -> list[bytes]:
            rows = store.db.conn.execute("SELECT embedding FROM templates UNION ALL SELECT payload FROM dead_letters")
            return [row[0] for row in rows] + [p.read_bytes() for p in paths.data_dir.rglob("*.enc")]

        assert len(tokens()) == 3
        for token in tokens():
            with pytest.raises(InvalidToken):
                old.decrypt(token)
            Fernet(keys[0]).decrypt(token)
        np.testing.assert_array_equal(store.templates_for(MODEL)[1][0], _vector(20))
        assert store.load_snapshot(event.event_id) == JPEG
        assert store.dead_letters()[0].payload == b"dead-letter-body"

        store.rotate_key(retire_old_keys=True)
        [newest] = read_keys(paths.key_file)
        assert newest not in keys
        for token in tokens():
            for retired in keys:
                with pytest.raises(InvalidToken):
                    Fernet(retired).decrypt(token)
        assert store.load_snapshot(event.event_id) == JPEG
    with paths.open() as reopened:  # the key check in the database follows the rotation
        np.testing.assert_array_equal(reopened.templates_for(MODEL)[1][0], _vector(20))


def test_key_file_is_created_0600_and_refused_when_others_can_read_it(paths: Paths) -> None:
    with paths.open():
        pass
    assert stat.S_IMODE(paths.key_file.stat().st_mode) == 0o600
    assert len(read_keys(paths.key_file)) == 1
    paths.key_file.chmod(0o644)
    with pytest.raises(StoreError, match="chmod 600"):
        paths.open()
    paths.key_file.chmod(0o600)
    paths.open().close()


def test_a_lost_or_wrong_key_file_is_refused_instead_of_replaced(paths: Paths) -> None:
    with paths.open() as store:
        pid = store.add_person("Keyed", NOW)
        store.add_template(pid, MODEL, _vector(30), 0.9, "photo:k.jpg", NOW)
    original = paths.key_file.read_bytes()
    paths.key_file.unlink()
    with pytest.raises(StoreError, match="missing"):
        paths.open()
    assert not paths.key_file.exists()  # no new key was made behind our back
    fd = os.open(paths.key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, Fernet.generate_key() + b"\n")
    os.close(fd)
    with pytest.raises(StoreError, match="does not hold the key"):
        paths.open()
    paths.key_file.write_bytes(original)
    with paths.open() as store:
        assert store.templates_for(MODEL)[0] == [pid]


# --- retention -------------------------------------------------------------------------------------------------


def test_purge_deletes_only_old_events_and_snapshots(store: HubStore, paths: Paths) -> None:
    ancient = NOW - timedelta(days=200)  # older than event retention
    old = NOW - timedelta(days=40)  # older than snapshot retention only
    recent = NOW - timedelta(days=1)
    events = {
        name: _event(seq, at, has_snapshot=True)
        for seq, (name, at) in enumerate([("ancient", ancient), ("old", old), ("recent", recent)], start=1)
    }
    store.insert_events(_received(*events.values()))
    for event in events.values():
        store.save_snapshot(event.event_id, JPEG, NOW)
    view_old = _capture(None, purpose="snapshot", at=old)
    view_recent = _capture(None, purpose="snapshot", at=recent)
    pid = store.add_person("Enrolled Long Ago", NOW)
    enrol_old = _capture(pid, at=ancient)
    for capture in (view_old, view_recent, enrol_old):
        store.save_capture(capture, NOW)
    store.record_dead_letter("t", "old", b"x", ancient)
    store.record_dead_letter("t", "new", b"y", recent)

    deleted = store.purge(before=NOW - timedelta(days=180), snapshots_before=NOW - timedelta(days=30))
    assert deleted == (1, 3)  # the ancient event; the ancient and old snapshots and the old view capture
    assert store.get_event(events["ancient"].event_id) is None
    old_row = store.get_event(events["old"].event_id)
    assert old_row is not None and old_row["snapshot_file"] is None and old_row["has_snapshot"] == 1
    assert store.load_snapshot(events["old"].event_id) is None
    assert store.load_snapshot(events["recent"].event_id) == JPEG
    assert store.load_capture(view_old.capture_id) is None
    assert store.load_capture(view_recent.capture_id) == JPEG
    assert store.load_capture(enrol_old.capture_id) == JPEG  # enrolment pictures stay while their person does
    assert [d.reason for d in store.dead_letters()] == ["new"]
    files = sorted(p.name for p in paths.data_dir.rglob("*.enc"))
    assert files == sorted(
        [f"{events['recent'].event_id}.jpg.enc", f"{view_recent.capture_id}.jpg.enc", f"{enrol_old.capture_id}.jpg.enc"]
    )
    assert store.purge(before=NOW - timedelta(days=180), snapshots_before=NOW - timedelta(days=30)) == (0, 0)


# --- devices, presence, attendance, audit ----------------------------------------------------------------------


def test_devices_upsert_sets_only_the_given_fields(store: HubStore) -> None:
    store.upsert_device(DEVICE)
    device = store.get_device(DEVICE)
    assert device is not None and (device.role, device.status, device.gallery_version) == ("both", "unknown", 0)
    health = wire.Health(device=DEVICE, at=NOW, uptime_s=5.0, fps=7.5, cpu_percent=30.0, outbox_depth=2)
    store.upsert_device(DEVICE, name="Front door", role="entrance", status="online", status_at=NOW, health=health)
    store.upsert_device(DEVICE, last_seen=NOW + timedelta(seconds=5), gallery_sent_version=3, model_pack="pack-a")
    device = store.get_device(DEVICE)
    assert device is not None
    assert (device.name, device.role, device.status, device.status_at) == ("Front door", "entrance", "online", NOW)
    assert (device.last_seen, device.gallery_sent_version, device.model_pack) == (
        NOW + timedelta(seconds=5),
        3,
        "pack-a",
    )
    assert device.health is not None and wire.Health.model_validate_json(json.dumps(device.health)) == health
    with pytest.raises(ValueError, match="role"):
        store.upsert_device(DEVICE, role="sideways")
    with pytest.raises(ValueError, match="unknown device field"):
        store.upsert_device(DEVICE, colour="red")
    with pytest.raises(ValueError, match="device id"):
        store.upsert_device("hub")
    with pytest.raises(ValueError, match="naive"):
        store.upsert_device(DEVICE, last_seen=datetime(2026, 1, 1))
    assert [d.id for d in store.list_devices()] == [DEVICE]


def test_presence_attendance_and_audit_round_trip(store: HubStore) -> None:
    pid = store.add_person("Present", NOW)
    store.set_presence(pid, "in", NOW, DEVICE, None, NOW)
    store.set_presence(pid, "out", NOW + timedelta(hours=8), DEVICE, None, NOW + timedelta(hours=8))
    [row] = store.presence()
    assert (row.state, row.since, row.updated_at) == ("out", NOW + timedelta(hours=8), NOW + timedelta(hours=8))
    store.set_attendance(pid, date(2026, 11, 21), NOW, NOW + timedelta(hours=8), 28800.0, "present", NOW)
    [day] = store.attendance(date(2026, 11, 21))
    assert (day.first_in, day.last_out, day.present_s, day.status) == (
        NOW,
        NOW + timedelta(hours=8),
        28800.0,
        "present",
    )
    assert store.attendance(date(2026, 11, 22)) == []
    with pytest.raises(sqlite3.IntegrityError):
        store.set_presence("p-nobody", "in", NOW, None, None, NOW)
    audit_id = store.audit("supervisor", "device.rename", DEVICE, {"to": "Front door"}, NOW)
    [entry] = store.audit_log(DEVICE)
    assert entry["id"] == audit_id and entry["details"] == {"to": "Front door"} and entry["at"] == NOW


def test_a_restored_backup_loses_the_people_erased_since_and_registered_backups_are_erased_too(tmp_path: Path) -> None:
    from hub.backup import backup_database
    from hub.store.erasure import BackupRegister

    data = tmp_path / "hub"
    with HubStore(data / "rollcall.db", data, data / "hub.key") as store:
        canary = store.add_person("Ulla Restorecanary", NOW)
        kept = store.add_person("Kept Person", NOW)
    registered = tmp_path / "backups" / "registered.db"
    elsewhere = tmp_path / "elsewhere.db"  # a copy the hub does not know of
    registered.parent.mkdir()
    for path in (registered, elsewhere):
        backup_database(data / "rollcall.db", path)
    BackupRegister(data).add(registered)
    with HubStore(data / "rollcall.db", data, data / "hub.key") as store:
        report = store.erase_person(canary, NOW + timedelta(hours=1), actor="admin")
    assert report.backups == 1 and report.backups_failed == ()
    assert b"Restorecanary" not in registered.read_bytes() and b"Kept Person" in registered.read_bytes()
    assert not registered.with_name(registered.name + "-wal").exists(), "a backup stays one file"
    assert b"Restorecanary" in elsewhere.read_bytes()
    # Restore the copy the hub did not know of: the ledger erases the person again when the store is opened by the hub.
    for suffix in ("", "-wal", "-shm"):
        (data / f"rollcall.db{suffix}").unlink(missing_ok=True)
    elsewhere.rename(data / "rollcall.db")
    with HubStore(data / "rollcall.db", data, data / "hub.key") as store:
        assert store.reapply_erasures(NOW + timedelta(days=1)) == [canary]
        assert store.reapply_erasures(NOW + timedelta(days=1)) == []
        assert {p.id for p in store.list_people()} == {kept}
    assert b"Restorecanary" not in (data / "rollcall.db").read_bytes()
    assert canary in (data / "erasures.log").read_text() and "Restorecanary" not in (data / "erasures.log").read_text()


def test_retention_runs_at_the_set_site_local_time_and_removes_only_what_is_past_its_limit(store: HubStore) -> None:
    from zoneinfo import ZoneInfo

    from hub import retention
    from hub.config import RetentionSettings

    settings = RetentionSettings(run_at="03:30", events_days=180, snapshots_days=30, dead_letters_days=30)
    berlin = ZoneInfo("Europe/Berlin")
    ran = datetime(2026, 11, 20, 2, 31, tzinfo=UTC)  # 03:31 in Berlin: today's run is done
    assert not retention.due(ran, datetime(2026, 11, 21, 2, 29, tzinfo=UTC), settings, berlin)  # 03:29 local
    assert retention.due(ran, datetime(2026, 11, 21, 2, 30, tzinfo=UTC), settings, berlin)  # 03:30 local
    assert not retention.due(
        datetime(2026, 11, 21, 2, 30, tzinfo=UTC), datetime(2026, 11, 21, 23, 0, tzinfo=UTC), settings, berlin
    )
    assert retention.due(None, ran, settings, berlin)
    summer = datetime(2026, 7, 1, 1, 30, tzinfo=UTC)  # 03:30 CEST: the slot follows the site's clock, not UTC
    assert retention.last_slot(summer, settings, berlin) == summer

    events = {
        name: _event(seq, at, has_snapshot=True)
        for seq, (name, at) in enumerate(
            [("ancient", NOW - timedelta(days=181)), ("old", NOW - timedelta(days=31)), ("recent", NOW)], start=1
        )
    }
    store.insert_events(_received(*events.values()))
    for event in events.values():
        store.save_snapshot(event.event_id, JPEG, NOW)
    store.record_dead_letter("t", "old", b"x", NOW - timedelta(days=31))
    store.record_dead_letter("t", "new", b"y", NOW - timedelta(days=29))
    store.audit("ada", "person.add", "p-1", {}, NOW - timedelta(days=800))
    store.audit("ada", "person.erase", "p-1", {}, NOW - timedelta(days=800))
    store.audit("ada", "person.add", "p-2", {}, NOW - timedelta(days=10))

    cut = retention.Cutoffs.at(NOW, settings)
    planned = retention.purge(store, cut, dry_run=True)
    assert planned == {
        "events": 1,
        "snapshots": 2,
        "attendance_photos": 0,
        "activity": 0,
        "file_changes": 0,
        "dead_letters": 1,
        "audit": 1,
    }
    assert store.get_event(events["ancient"].event_id) is not None, "a dry run deletes nothing"
    assert retention.purge(store, cut) == planned
    assert store.get_event(events["ancient"].event_id) is None
    assert store.load_snapshot(events["old"].event_id) is None and store.get_event(events["old"].event_id) is not None
    assert store.load_snapshot(events["recent"].event_id) == JPEG
    assert [d.reason for d in store.dead_letters()] == ["new"]
    assert sorted(row["action"] for row in store.audit_log()) == ["person.add", "person.erase"]
    assert set(retention.purge(store, cut, dry_run=True).values()) == {0}


def test_write_batch_commits_its_writes_once_and_a_failing_inner_write_only_undoes_itself(
    store: HubStore, paths: Paths
) -> None:
    person = store.add_person("Batch Person", NOW)
    other = sqlite3.connect(paths.database)
    with store.write_batch():
        store.set_presence(person, "in", NOW, "door-1", None, NOW)
        store.set_meta("batch:a", "1")
        # A nested batch joins the outer one; the failing transaction inside it is a savepoint.
        with pytest.raises(StoreError), store.write_batch(), transaction(store.db) as tx:
            tx.execute("INSERT INTO meta (key, value) VALUES ('batch:b', '2')")
            raise StoreError("this inner write fails")
        # Not committed yet: another connection sees none of it.
        assert other.execute("SELECT COUNT(*) FROM presence").fetchone()[0] == 0
    assert other.execute("SELECT state FROM presence WHERE person_id = ?", (person,)).fetchone()[0] == "in"
    assert store.get_meta("batch:a") == "1"
    assert store.get_meta("batch:b") is None  # rolled back to its savepoint, the rest kept


def test_write_batch_rolls_back_everything_when_it_fails(store: HubStore) -> None:
    person = store.add_person("Batch Person", NOW)
    with pytest.raises(RuntimeError), store.write_batch():
        store.set_presence(person, "in", NOW, "door-1", None, NOW)
        raise RuntimeError("the batch fails")
    assert store.presence() == []
    store.set_meta("after", "x")  # the connection is usable again, out of any transaction
    assert not store.db.conn.in_transaction
