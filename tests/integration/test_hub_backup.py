"""The hub as a service: ``rollcall hub backup`` (a consistent copy while it writes, and a restore) and sd_notify."""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
from pathlib import Path

import pytest

from edge.protocol import wire
from hub.config import HubSettings
from hub.store import HubStore
from rollcall.cli import main
from tests.helpers.brokers import TestBroker
from tests.helpers.factories import make_event
from tests.helpers.hub import HubStarter, feed, hub_config, running_hub

pytestmark = pytest.mark.integration


def _count(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        connection.close()


def test_backup_while_the_hub_writes_is_consistent_and_restores(
    start_hub: HubStarter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = start_hub()
    with hub.store_lock:
        person = hub.store.add_person("Backed Up", wire.now_utc())
    stop = threading.Event()
    fed = [0]

    def write() -> None:  # the hub's own writer path, batch after batch, until told to stop
        seq = 0
        while not stop.is_set():
            batch = [
                make_event(device="door-1", seq=seq + i + 1, at=wire.now_utc(), person_id=person, score=0.7)
                for i in range(50)
            ]
            feed(hub, *batch)
            seq += len(batch)
            fed[0] = seq

    writer = threading.Thread(target=write, name="test-writer")
    writer.start()
    config = str(tmp_path / "hub.toml")
    dest = tmp_path / "backups" / "rollcall.db"
    dest.parent.mkdir()
    try:
        while fed[0] < 2000:
            threading.Event().wait(0.05)
        assert main(["hub", "backup", str(dest), "--config", config]) == 0
        during = fed[0]
        threading.Event().wait(0.5)
        assert fed[0] > during, "the hub kept writing during the backup"
    finally:
        stop.set()
        writer.join(30)
    captured = capsys.readouterr()
    assert "quick_check ok" in captured.out and "pages (100%)" in captured.err
    assert dest.stat().st_mode & 0o777 == 0o600
    copied = _count(dest)
    assert 2000 <= copied <= fed[0]
    backup = sqlite3.connect(dest)
    seqs = [row[0] for row in backup.execute("SELECT seq FROM events WHERE device = 'door-1' ORDER BY seq")]
    assert backup.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    backup.close()
    assert seqs == list(range(1, copied + 1)), "the copy is one moment of the database: whole batches, no gaps"

    # An existing backup is never overwritten by accident; --force replaces it.
    before = dest.read_bytes()
    assert main(["hub", "backup", str(dest), "--config", config, "--quiet"]) == 1
    assert "exists already" in capsys.readouterr().err and dest.read_bytes() == before
    assert main(["hub", "backup", str(dest), "--config", config, "--quiet", "--force"]) == 0
    assert _count(dest) == fed[0]
    assert not list(dest.parent.glob(".*partial*")), "no partial file is left behind"

    # Restore (docs/hub.md): the copy in place of the database, with the same key file, opens as a hub store.
    restored = tmp_path / "restored"
    restored.mkdir()
    (restored / "rollcall.db").write_bytes(dest.read_bytes())
    settings = HubSettings(database=restored / "rollcall.db", data_dir=restored, key_file=Path(hub.config.hub.key_file))
    with HubStore.from_settings(settings) as store:
        assert [p.id for p in store.list_people()] == [person]


def test_backup_refuses_what_it_cannot_do(
    start_hub: HubStarter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start_hub()
    config = str(tmp_path / "hub.toml")
    assert main(["hub", "backup", str(tmp_path / "no-such-folder" / "x.db"), "--config", config]) == 1
    assert "create it first" in capsys.readouterr().err
    assert main(["hub", "backup", str(tmp_path), "--config", config]) == 1
    assert "is a folder" in capsys.readouterr().err


def test_the_hub_tells_systemd_it_is_ready_alive_and_stopping(
    broker: TestBroker, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        monkeypatch.setenv("WATCHDOG_USEC", "60000000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        with running_hub(hub_config(tmp_path, broker, model_dir)):
            received = [listener.recv(4096).decode() for _ in range(4)]
        while "STOPPING=1" not in received:
            received.append(listener.recv(4096).decode())
    assert any(m.startswith("READY=1\nSTATUS=hub hub-1 for site hq") for m in received)
    assert "WATCHDOG=1" in received, "the writer thread pings the watchdog"
