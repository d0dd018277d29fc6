"""The hub's store under faults: outbox epochs (a device's new outbox), and damaged database files at start."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils

from edge.protocol import wire
from hub.store import MIGRATIONS, HubStore, ReceivedEvent, StoreError, migrate
from rollcall.cli import main
from tests.helpers.factories import make_event

NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
DEVICE = "door-1"
OLD, NEW = "00000000000000aa", "00000000000000bb"


def _events(epoch: str | None, seqs: range, start: datetime = NOW) -> list[ReceivedEvent]:
    events = [
        make_event(at=start + timedelta(minutes=seq), seq=seq, person_id="p-1", device=DEVICE).model_copy(
            update={"epoch": epoch}
        )
        for seq in seqs
    ]
    return [ReceivedEvent(event, start + timedelta(hours=1)) for event in events]


@pytest.fixture
def store(tmp_path: Path) -> HubStore:
    return HubStore(tmp_path / "hub.db", tmp_path / "data", tmp_path / "hub.key")


# --- epochs ---------------------------------------------------------------------------------------------------


def test_a_new_epoch_starts_a_new_series_and_nothing_becomes_a_dead_letter(store: HubStore) -> None:
    first = _events(OLD, range(1, 11))
    assert len(store.insert_events(first)) == 10
    store.advance_delivered(DEVICE)
    # The outbox was moved aside (or was 0 bytes): the device counts from 1 again, under a new epoch.
    second = _events(NEW, range(1, 11), start=NOW + timedelta(hours=2))
    assert len(store.insert_events(second)) == 10
    assert store.dead_letter_count() == 0
    through = store.advance_delivered(DEVICE)
    assert through == second[-1].event.at, "the device is delivered through the newest epoch's events"
    assert store.device_epochs(DEVICE) == [(OLD, 10), (NEW, 10)]
    device = store.get_device(DEVICE)
    assert device is not None and device.delivered_seq == 10
    stored = store.db.conn.execute("SELECT epoch, seq FROM events ORDER BY epoch, seq").fetchall()
    assert stored == [(OLD, s) for s in range(1, 11)] + [(NEW, s) for s in range(1, 11)]


def test_a_gap_is_tracked_per_epoch(store: HubStore) -> None:
    store.insert_events(_events(OLD, range(1, 4)) + _events(OLD, range(5, 7)))
    store.insert_events(_events(NEW, range(1, 3), start=NOW + timedelta(hours=2)))
    store.advance_delivered(DEVICE)
    assert store.device_epochs(DEVICE) == [(OLD, 3), (NEW, 2)]
    store.insert_events(_events(OLD, range(4, 5)))
    store.advance_delivered(DEVICE)
    assert store.device_epochs(DEVICE) == [(OLD, 6), (NEW, 2)]


def test_a_reused_seq_within_one_epoch_is_still_a_dead_letter(store: HubStore) -> None:
    original, impostor = _events(NEW, range(5, 6)), _events(NEW, range(5, 6))
    assert store.insert_events(original + impostor) == [original[0].event.event_id]
    [letter] = store.dead_letters()
    assert "seq 5" in letter.reason and NEW in letter.reason


def test_events_without_an_epoch_are_accepted_as_before(store: HubStore) -> None:
    legacy = _events(None, range(1, 6))
    assert len(store.insert_events(legacy)) == 5
    assert store.insert_events(legacy) == [], "stored once"
    # The same device, upgraded: its outbox got an epoch and keeps counting.
    assert len(store.insert_events(_events(NEW, range(6, 9)))) == 3
    store.advance_delivered(DEVICE)
    assert store.device_epochs(DEVICE) == [("", 5), (NEW, 8)]
    assert store.dead_letter_count() == 0
    raw = wire.encode(legacy[0].event)
    assert b'"epoch"' in raw and wire.decode_as(wire.Event, raw.replace(b',"epoch":null', b"")) == legacy[0].event


def test_the_epoch_migration_keeps_events_and_what_was_delivered(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    db = sqlite_utils.Database(sqlite3.connect(path))
    migrate(db, MIGRATIONS[:4])
    db.conn.execute(
        "INSERT INTO events (event_id, device, seq, at, received_at, type, track, quality, has_snapshot, redacted) "
        "VALUES ('01JDX0000000000000000000AA', ?, 7, ?, ?, 'seen', 1, 0.9, 0, 0)",
        (DEVICE, NOW.isoformat(), NOW.isoformat()),
    )
    db.conn.execute(
        "INSERT INTO devices (id, delivered_seq, delivered_through) VALUES (?, 7, ?)", (DEVICE, NOW.isoformat())
    )
    db.conn.commit()
    db.conn.close()
    with HubStore(path, tmp_path / "data", tmp_path / "hub.key") as store:
        assert store.schema_version == len(MIGRATIONS)
        assert store.device_epochs(DEVICE) == [("", 7)]
        assert len(store.insert_events(_events(None, range(8, 9)))) == 1
        assert store.insert_events(_events(None, range(7, 8))) == [] and store.dead_letter_count() == 1


# --- damaged databases at start -------------------------------------------------------------------------------


def test_a_zero_byte_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    path.write_bytes(b"")
    with pytest.raises(StoreError) as info:
        HubStore(path, tmp_path / "data", tmp_path / "hub.key")
    text = str(info.value)
    assert str(path) in text and "0 bytes" in text and f"mv '{path}' '{path}.bad'" in text
    assert path.read_bytes() == b"", "nothing written into it"


def _hub_with_events(tmp_path: Path) -> Path:
    path = tmp_path / "hub.db"
    with HubStore(path, tmp_path / "data", tmp_path / "hub.key") as store:
        store.insert_events(_events(OLD, range(1, 400)))
        store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def _garble_page(path: Path, index_name: str) -> None:
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (index_name,)).fetchone()[0]
    conn.close()
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(os.urandom(page_size))


def test_a_page_garbled_database_is_refused_with_advice_and_left_alone(tmp_path: Path) -> None:
    path = _hub_with_events(tmp_path)
    _garble_page(path, "idx_events_person_id")
    before = path.read_bytes()
    with pytest.raises(StoreError) as info:
        HubStore(path, tmp_path / "data", tmp_path / "hub.key")
    text = str(info.value)
    assert "corrupt" in text and str(path) in text and f"mv '{path}' '{path}.bad'" in text and "backup" in text
    assert path.read_bytes() == before, "nothing overwritten"


def _report_config(tmp_path: Path, database: Path) -> Path:
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[site]\nid = "hq"\n\n[hub]\ndatabase = "{database}"\ndata_dir = "{tmp_path / "data"}"\n'
        f'key_file = "{tmp_path / "hub.key"}"\n'
    )
    return config


@pytest.mark.parametrize("damage", ["garbled", "zero-bytes", "not-sqlite"])
def test_report_events_on_a_damaged_database_is_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    path = _hub_with_events(tmp_path)
    if damage == "garbled":
        data = bytearray(path.read_bytes())
        data[8192:] = os.urandom(len(data) - 8192)
        path.write_bytes(bytes(data))
    elif damage == "zero-bytes":
        path.write_bytes(b"")
    else:
        path.write_bytes(b"not a database " * 500)
    config = _report_config(tmp_path, path)
    for command in (["events"], ["attendance"], ["person", "p-1"]):
        assert main(["report", *command, "--config", str(config)]) != 0
        err = capsys.readouterr().err
        assert "Traceback" not in err and str(path) in err and ("corrupt" in err or "not a rollcall" in err), err


def test_report_on_a_database_damaged_where_the_report_does_not_read_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One garbled index page the events query never touches: the report still says the file is damaged."""
    path = _hub_with_events(tmp_path)
    _garble_page(path, "idx_events_person_id")
    before = path.read_bytes()
    assert main(["report", "events", "--config", str(_report_config(tmp_path, path))]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "corrupt" in err and f"mv '{path}' '{path}.bad'" in err, err
    assert path.read_bytes() == before, "nothing overwritten"
