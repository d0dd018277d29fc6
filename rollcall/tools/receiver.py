"""A minimal hub stand-in that commits device messages to SQLite and acks them: for link tests and benchmarks.

It follows the hub's rule (commit first, then ack) with batched transactions, so it measures the link, not a slow
receiver. The real hub (``rollcall hub run``) replaces it on a site.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import defaultdict
from pathlib import Path

from edge.protocol import wire
from edge.protocol.config import MqttSettings
from edge.protocol.mqtt import MqttLink, Received
from hub.batches import agent_acks, device_acks, drain_batches

log = logging.getLogger("rollcall.receiver")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY, device TEXT NOT NULL, seq INTEGER NOT NULL, at TEXT NOT NULL,
    type TEXT NOT NULL, person_id TEXT, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (event_id TEXT PRIMARY KEY, device TEXT NOT NULL, bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS captures (
    capture_id TEXT PRIMARY KEY, device TEXT NOT NULL, command_id TEXT NOT NULL, purpose TEXT NOT NULL,
    idx INTEGER NOT NULL, final INTEGER NOT NULL, bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_activity (
    event_id TEXT PRIMARY KEY, agent TEXT NOT NULL, seq INTEGER NOT NULL, payload TEXT NOT NULL,
    received_at REAL NOT NULL
);
"""


class AckingReceiver:
    """Subscribes to every device's events, snapshots and captures and every agent's activity at one site.

    Commits in batches, then acks: devices on ``device/<id>/ack``, agents on ``agent/<id>/ack``.
    """

    def __init__(
        self,
        settings: MqttSettings,
        database: Path,
        *,
        site: str = "hq",
        prefix: str = wire.DEFAULT_PREFIX,
        client_id: str = "receiver",
        max_batch: int = 500,
    ) -> None:
        self.topics = wire.Topics(site, prefix)
        self.database = database
        self.max_batch = max_batch
        self._queue: queue.Queue[Received] = queue.Queue()
        self._stop = threading.Event()
        self.committed_at: dict[str, float] = {}
        """event_id -> time.time() when its transaction committed (for latency figures)."""
        self.rejected = 0
        self.link = MqttLink(settings, client_id=client_id, on_message=self._queue.put)
        for leaf in ("event", "snapshot", "capture"):
            self.link.subscribe(self.topics.all_devices(leaf), qos=1)
        self.link.subscribe(self.topics.all_agents("activity"), qos=1)
        self._thread = threading.Thread(target=self._run, name=f"receiver-{client_id}", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        """Connect and start committing; raises if the broker cannot be reached within ``timeout``."""
        self.link.start()
        if not self.link.wait_subscribed(timeout):
            self.link.stop()
            raise ConnectionError(
                f"receiver could not subscribe at {self.link.settings.host}:{self.link.settings.port}"
            )
        self._thread.start()

    def stop(self) -> None:
        """Finish the batch in hand and disconnect."""
        self._stop.set()
        self._thread.join(10)
        self.link.stop()

    def _run(self) -> None:
        connection = sqlite3.connect(self.database)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(SCHEMA)
        try:
            drain_batches(
                self._queue,
                lambda batch: self._commit_and_ack(connection, batch),
                self._stop,
                max_batch=self.max_batch,
                wait_s=0.1,
            )
        finally:
            connection.close()

    def _commit_and_ack(self, connection: sqlite3.Connection, batch: list[Received]) -> None:
        acks: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        activity_acks: dict[str, list[str]] = defaultdict(list)
        now = time.time()
        with connection:
            for message in batch:
                try:
                    ref, payload = wire.decode(message.topic, message.payload)
                except wire.WireError as exc:
                    self.rejected += 1
                    log.warning("rejected: %s", exc)
                    continue
                device = ref.entity or ""
                if isinstance(payload, wire.Event):
                    connection.execute(
                        "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            payload.event_id,
                            device,
                            payload.seq,
                            payload.at.isoformat(),
                            payload.type,
                            payload.person_id,
                            now,
                        ),
                    )
                    acks[device][0].append(payload.event_id)
                elif isinstance(payload, wire.Snapshot):
                    connection.execute(
                        "INSERT OR IGNORE INTO snapshots VALUES (?, ?, ?)",
                        (payload.event_id, device, len(payload.data)),
                    )
                    acks[device][1].append(payload.event_id)
                elif isinstance(payload, wire.Capture):
                    connection.execute(
                        "INSERT OR IGNORE INTO captures VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            payload.capture_id,
                            device,
                            payload.command_id,
                            payload.purpose,
                            payload.index,
                            int(payload.final),
                            len(payload.data),
                        ),
                    )
                    acks[device][0].append(payload.capture_id)
                elif isinstance(payload, wire.Activity):
                    connection.execute(
                        "INSERT OR IGNORE INTO agent_activity VALUES (?, ?, ?, ?, ?)",
                        (payload.event_id, device, payload.seq, wire.encode(payload).decode(), now),
                    )
                    activity_acks[device].append(payload.event_id)
        committed = time.time()
        for device, (event_ids, snapshot_ids) in acks.items():
            for event_id in event_ids:
                self.committed_at.setdefault(event_id, committed)
            for ack in device_acks(device, event_ids, snapshot_ids, wire.now_utc()):
                self.link.publish(self.topics.device_ack(device), ack, qos=1)
        for agent, event_ids in activity_acks.items():
            for event_id in event_ids:
                self.committed_at.setdefault(event_id, committed)
            for ack in agent_acks(agent, event_ids, wire.now_utc()):
                self.link.publish(self.topics.agent_ack(agent), ack, qos=1)

    def stored_events(self) -> list[tuple[str, str, int]]:
        """(event_id, device, seq) of every committed event, in seq order."""
        connection = sqlite3.connect(self.database)
        try:
            return list(connection.execute("SELECT event_id, device, seq FROM events ORDER BY device, seq"))
        finally:
            connection.close()

    def stored_activity(self, agent: str | None = None) -> list[wire.Activity]:
        """Every committed agent activity batch (of one agent, or all), in (agent, seq) order."""
        connection = sqlite3.connect(self.database)
        try:
            rows = list(connection.execute("SELECT agent, payload FROM agent_activity ORDER BY agent, seq"))
        except sqlite3.OperationalError:
            return []  # the table is created by the receiver thread; nothing committed yet
        finally:
            connection.close()
        out: list[wire.Activity] = []
        for who, raw in rows:
            if agent is None or who == agent:
                payload = wire.decode_as(wire.Activity, raw)
                assert isinstance(payload, wire.Activity)
                out.append(payload)
        return out
