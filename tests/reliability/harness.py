"""The parts every reliability scenario uses: a site (broker + hub process), producer processes, the reckoning.

A scenario owns one :class:`Site` (its own Mosquitto on its own port, its own ``rollcall hub run`` process and
database), runs door devices against it (:class:`Producer`: the light device of ``tests.helpers.producer``),
does its faults, drains every outbox, stops the hub and hands everything to :func:`reckon`, which compares what the
outboxes accepted with what the hub stored and checks both databases. Nothing here asserts; scenarios return a
:class:`Result` and the runner or the pytest test judges it.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge.protocol import wire
from edge.protocol.config import MqttSettings
from edge.protocol.mqtt import MqttLink, Received
from rollcall.broker import LocalBroker, find_mosquitto

REPO_ROOT = Path(__file__).resolve().parents[2]
SITE = "hq"
PYTHON = sys.executable


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every child: this checkout first on the path."""
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(extra or {})}


def wait_until(condition: Any, timeout: float, step: float = 0.1) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


# --- what a scenario reports ---------------------------------------------------------------------------------------


@dataclass
class Result:
    """One scenario's figures. ``problems`` are its own failed checks (beyond lost, duplicated and integrity)."""

    name: str
    faults: int = 0
    produced: int = 0
    """Events the outboxes accepted (``Outbox.add`` returned), including ones committed just before a kill."""
    stored: int = 0
    """Of the produced events, how many the hub stored."""
    lost: int = 0
    """Produced events (and their snapshots) not stored at the hub once every outbox was drained."""
    duplicated: int = 0
    """Events the hub stored more than once (by event id, or by device and sequence number)."""
    gaps: int = 0
    """Sequence numbers missing between 1 and the highest one the hub stored, per device."""
    dead_letters: int = 0
    integrity: str = "ok"
    """``ok`` when ``PRAGMA quick_check`` passed on the hub's database and every outbox, else what failed."""
    recover_s: float | None = None
    recover_kind: str = ""
    """What ``recover_s`` measures: ``resume`` (the worst time from a fault's end, e.g. a restart, to the next event
    the hub stored) or ``drain`` (from the fault's end to every event accepted before it stored)."""
    problems: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing twice, both databases sound, every own check passed."""
        return self.lost == 0 and self.duplicated == 0 and self.integrity == "ok" and not self.problems

    def line(self) -> str:
        """The one line ``make reliability`` prints for this scenario."""
        recover = "-" if self.recover_s is None else f"{self.recover_s:.1f}s ({self.recover_kind})"
        extra = "".join(f" {key}={value}" for key, value in self.extra.items())
        problems = "" if not self.problems else " problems: " + "; ".join(self.problems)
        return (
            f"{'PASS' if self.ok else 'FAIL'} {self.name}: faults={self.faults} produced={self.produced} "
            f"stored={self.stored} lost={self.lost} duplicated={self.duplicated} gaps={self.gaps} "
            f"dead_letters={self.dead_letters} integrity={self.integrity} recover={recover}{extra} "
            f"took={self.seconds:.0f}s{problems}"
        )


# --- the site: broker and hub ----------------------------------------------------------------------------------------


class Site:
    """A private broker and a ``rollcall hub run`` process on it, under ``root``; stopped by :meth:`close`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.broker = LocalBroker("mosquitto" if find_mosquitto() else "embedded", root / "broker")
        self.hub_dir = root / "hub"
        self.hub: subprocess.Popen[bytes] | None = None
        self.hub_starts = 0
        self.topics = wire.Topics(SITE)

    @property
    def port(self) -> int:
        """The broker's port."""
        return self.broker.port

    @property
    def database(self) -> Path:
        """The hub's SQLite database."""
        return self.hub_dir / "rollcall.db"

    def hub_config(self, port: int | None = None) -> Path:
        """The hub's config: this site's broker; enrolment off (no models), so it starts in about a second."""
        no_models = self.root / "no-models"
        no_models.mkdir(exist_ok=True)
        path = self.root / "hub.toml"
        path.write_text(
            f"""[site]
id = "{SITE}"
timezone = "UTC"

[mqtt]
host = "127.0.0.1"
port = {port or self.port}
keepalive_s = 5
reconnect_min_s = 1
reconnect_max_s = 2

[hub]
database = "{self.database}"
data_dir = "{self.hub_dir}"
key_file = "{self.hub_dir / "hub.key"}"
models_dir = "{no_models}"
accept_unknown_devices = true
"""
        )
        return path

    def start(self) -> None:
        """Broker, then the hub; returns once the hub is online at the broker (its session exists from then on)."""
        self.broker.start()
        with self._watch_status(self.topics.hub_status()) as online:
            self.start_hub()
            if not online.wait(60):
                raise RuntimeError(f"the hub did not come online; see {self.root / 'hub.log'}")

    def start_hub(self) -> float:
        """Spawn the hub process; the wall-clock time it was spawned."""
        config = self.hub_config()
        with (self.root / "hub.log").open("ab") as log:
            self.hub = subprocess.Popen(
                [PYTHON, "-m", "rollcall.cli", "--log-level", "WARNING", "hub", "run", "--config", str(config)],
                cwd=REPO_ROOT,
                env=child_env(),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.hub_starts += 1
        return time.time()

    def kill_hub(self) -> None:
        """SIGKILL the hub: no flush, no goodbye."""
        if self.hub is not None:
            self.hub.kill()
            self.hub.wait(10)

    def hub_alive(self) -> bool:
        """Whether the hub process is running."""
        return self.hub is not None and self.hub.poll() is None

    def stop_hub(self) -> int | None:
        """SIGTERM the hub and its exit status (None when it was not running)."""
        if self.hub is None:
            return None
        if self.hub.poll() is None:
            self.hub.send_signal(signal.SIGTERM)
            try:
                self.hub.wait(30)
            except subprocess.TimeoutExpired:
                self.hub.kill()
                self.hub.wait(10)
        status = self.hub.returncode
        self.hub = None
        return status

    def close(self) -> None:
        """Stop the hub and the broker."""
        self.stop_hub()
        self.broker.stop()

    def __enter__(self) -> Site:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    class _Online:
        def __init__(self) -> None:
            self.event = threading.Event()

        def __call__(self, message: Received) -> None:
            try:
                _, payload = wire.decode(message.topic, message.payload)
            except wire.WireError:
                return
            if isinstance(payload, wire.Status) and payload.state == "online":
                self.event.set()

        def wait(self, timeout: float) -> bool:
            return self.event.wait(timeout)

    def _watch_status(self, topic: str) -> _StatusWatch:
        return _StatusWatch(self.port, topic, Site._Online())


class _StatusWatch:
    """A subscriber on one status topic for the length of a ``with`` block."""

    def __init__(self, port: int, topic: str, online: Site._Online) -> None:
        settings = MqttSettings(host="127.0.0.1", port=port, keepalive_s=5)
        self.online = online
        self.link = MqttLink(settings, client_id=f"watch-{port}", on_message=online, clean_session=True)
        self.link.subscribe(topic)

    def __enter__(self) -> Site._Online:
        self.link.start()
        if not self.link.wait_subscribed(15):
            self.link.stop()
            raise RuntimeError("could not subscribe at the scenario's broker")
        return self.online

    def __exit__(self, *exc: object) -> None:
        self.link.stop()


# --- door devices --------------------------------------------------------------------------------------------------


@dataclass
class Accepted:
    """One event an outbox accepted, as the producer reported it."""

    seq: int
    event_id: str
    snapshot: bool
    at: float
    """time.time() when the harness read the report (just after the commit)."""


class Ledger:
    """Everything one device's outbox accepted, over all the producer processes that used it."""

    def __init__(self, device: str, data_dir: Path) -> None:
        self.device = device
        self.data_dir = data_dir
        self.accepted: dict[str, Accepted] = {}
        self._lock = threading.Lock()

    @property
    def outbox(self) -> Path:
        """The outbox file."""
        return self.data_dir / "outbox.db"

    def add(self, item: Accepted) -> None:
        """Record one accepted event."""
        with self._lock:
            self.accepted[item.event_id] = item

    def count(self) -> int:
        """Events accepted so far."""
        with self._lock:
            return len(self.accepted)

    def items(self) -> list[Accepted]:
        """A copy of what was accepted."""
        with self._lock:
            return list(self.accepted.values())


class Producer:
    """``tests.helpers.producer`` as a child process writing into ``ledger``'s outbox."""

    def __init__(
        self,
        ledger: Ledger,
        port: int,
        *,
        rate: float = 100.0,
        events: int = 0,
        snapshots: bool = True,
        drain: bool = False,
        env: dict[str, str] | None = None,
        keepalive: int = 5,
    ) -> None:
        command = [PYTHON, "-m", "tests.helpers.producer", "--port", str(port), "--device", ledger.device]
        command += ["--data-dir", str(ledger.data_dir), "--rate", str(rate), "--events", str(events)]
        command += ["--keepalive", str(keepalive)]
        command += (["--snapshots"] if snapshots else []) + (["--drain"] if drain else [])
        self.ledger = ledger
        self.log_path = ledger.data_dir.parent / f"{ledger.device}.log"
        ledger.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=child_env(env), stdout=subprocess.PIPE, stderr=log, text=True
            )
        self.started_at = time.time()
        self.ready = threading.Event()
        self.drained = threading.Event()
        self.done = threading.Event()
        self.added = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("ADDED "):
                _, seq, event_id, snapshot = line.split()
                self.ledger.add(Accepted(int(seq), event_id, snapshot == "1", time.time()))
                self.added += 1
            elif line.startswith("READY"):
                self.ready.set()
            elif line.startswith("DRAINED"):
                self.drained.set()
            elif line.startswith("DONE"):
                self.done.set()

    def kill(self) -> None:
        """SIGKILL, then read what it reported before it died."""
        self.process.kill()
        self.process.wait(10)
        self._reader.join(10)

    def terminate(self) -> int:
        """SIGTERM and its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait(10)
        self._reader.join(10)
        return status


def drain(ledger: Ledger, port: int, stalled_after: float = 30.0) -> bool:
    """Run a producer that produces nothing until the outbox is empty (every message and snapshot acked).

    Gives up when the outbox has not shrunk for ``stalled_after`` seconds (the hub refuses what is left).
    """
    drainer = Producer(ledger, port, drain=True)
    depth, changed = None, time.monotonic()
    while not drainer.drained.wait(1.0) and drainer.process.poll() is None:
        now_depth = outbox_depth(ledger.outbox) if ledger.outbox.exists() else None
        if now_depth != depth:
            depth, changed = now_depth, time.monotonic()
        elif time.monotonic() - changed > stalled_after:
            break
    drainer.terminate()
    return drainer.drained.is_set()


def outbox_depth(path: Path) -> tuple[int, int]:
    """(messages, attachments) still in an outbox file, read without writing."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        messages = int(connection.execute("SELECT count(*) FROM messages").fetchone()[0])
        attachments = int(connection.execute("SELECT count(*) FROM attachments").fetchone()[0])
        return messages, attachments
    finally:
        connection.close()


def quick_check(path: Path) -> str:
    """``PRAGMA quick_check`` of one database file: ``ok``, or its first problems."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = connection.execute("PRAGMA quick_check").fetchall()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        return f"{path.name}: {exc}"
    text = "; ".join(str(row[0]) for row in rows[:3])
    return "ok" if text == "ok" else f"{path.name}: {text}"


# --- the reckoning -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """One event row of the hub's database."""

    event_id: str
    device: str
    epoch: str
    """The outbox epoch the seq counts in (a new outbox file starts a new series)."""
    seq: int
    received_at: float
    at: float
    snapshot: bool


def stored_events(database: Path) -> list[Stored]:
    """Every event the hub stored, with whether its snapshot was stored too."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT e.event_id, e.device, e.epoch, e.seq, e.received_at, e.at, s.event_id IS NOT NULL "
            "FROM events AS e LEFT JOIN snapshots AS s ON s.event_id = e.event_id"
        ).fetchall()
    finally:
        connection.close()
    return [
        Stored(row[0], row[1], row[2], row[3], _timestamp(row[4]), _timestamp(row[5]), bool(row[6])) for row in rows
    ]


def dead_letter_count(database: Path) -> int:
    """Messages in the hub's dead-letter table (a row may stand for several of one sender, reason and hour)."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return int(connection.execute("SELECT coalesce(sum(count), 0) FROM dead_letters").fetchone()[0])
    finally:
        connection.close()


def _timestamp(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def reckon(
    result: Result,
    site: Site,
    ledgers: Iterable[Ledger],
    *,
    fault_ends: list[float],
    recover: Literal["resume", "drain"],
) -> Result:
    """Drain every outbox, stop the hub and fill ``result`` in: what was accepted against what the hub stored.

    Call it with the site's broker and hub running and no producer left running.
    """
    ledgers = list(ledgers)
    for ledger in ledgers:
        if not drain(ledger, site.port):
            messages, attachments = outbox_depth(ledger.outbox)
            result.problems.append(
                f"{ledger.device}: the outbox did not drain ({messages} messages, {attachments} snapshots left)"
            )
    if not site.hub_alive():
        result.problems.append("the hub was not running at the end")
    site.stop_hub()
    rows = stored_events(site.database)
    result.dead_letters = dead_letter_count(site.database)
    checks = [quick_check(site.database)] + [quick_check(ledger.outbox) for ledger in ledgers]
    failed = [check for check in checks if check != "ok"]
    result.integrity = "ok" if not failed else "; ".join(failed)
    by_id: dict[str, Stored] = {}
    accepted_total = 0
    snapshots_expected = snapshots_stored = 0
    worst: list[float] = []
    for ledger in ledgers:
        mine = [row for row in rows if row.device == ledger.device]
        result.duplicated += len(mine) - len({row.event_id for row in mine})
        result.duplicated += len(mine) - len({(row.epoch, row.seq) for row in mine})
        for epoch in {row.epoch for row in mine}:  # sequence numbers count within an outbox epoch
            seqs = {row.seq for row in mine if row.epoch == epoch}
            result.gaps += max(seqs) - len(seqs)
        by_id.update({row.event_id: row for row in mine})
        accepted = ledger.items()
        accepted_total += len(accepted)
        for item in accepted:
            row = by_id.get(item.event_id)
            if row is None:
                result.lost += 1
                continue
            result.stored += 1
            if item.snapshot:
                snapshots_expected += 1
                if row.snapshot:
                    snapshots_stored += 1
                else:
                    result.lost += 1  # the event arrived, its snapshot (accepted with it) did not
        worst.extend(_recovery(accepted, by_id, fault_ends, recover))
        if recover == "resume" and fault_ends:
            # After the last fault, how long the backlog it left took to be delivered.
            backlog = _recovery(accepted, by_id, fault_ends[-1:], "drain")
            result.extra["backlog_after_last_fault_s"] = f"{max(backlog):.1f}"
    result.produced = accepted_total
    result.extra["snapshots"] = f"{snapshots_stored}/{snapshots_expected}"
    result.recover_s = max(worst) if worst else None
    result.recover_kind = recover
    return result


def _recovery(accepted: list[Accepted], stored: dict[str, Stored], ends: list[float], kind: str) -> list[float]:
    """Per fault: seconds from its end to the first event stored after it (resume) or to the backlog stored (drain).

    ``resume`` counts only faults after which something was stored before the next fault began: with faults a
    second apart, a hub still starting when it is killed again has not recovered, and that is no figure.
    """
    figures = []
    arrivals = sorted(row.received_at for row in stored.values())
    for end, following in itertools.pairwise([*sorted(ends), float("inf")]):
        if kind == "resume":
            first = next((moment for moment in arrivals if moment >= end), None)
            if first is not None and first < following:
                figures.append(first - end)
        else:
            backlog = [
                stored[item.event_id].received_at
                for item in accepted
                if item.at < end and item.event_id in stored and stored[item.event_id].received_at >= end
            ]
            figures.append(max(backlog) - end if backlog else 0.0)
    return figures


def summary_json(results: list[Result]) -> str:
    """The last line of ``make reliability``: exactly the keys scenarios, produced, lost, duplicated."""
    return json.dumps(
        {
            "scenarios": len(results),
            "produced": sum(r.produced for r in results),
            "lost": sum(r.lost for r in results),
            "duplicated": sum(r.duplicated for r in results),
        }
    )
