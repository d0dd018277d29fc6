"""The hub service behind ``rollcall hub run``: ingest, acks after commit, presence, attendance, galleries, requests.

One ``writer`` thread owns every write: it takes what the MQTT thread queued, validates it against the wire
contract (bad input goes to the dead-letter table with the reason, never crashes the hub), commits a batch, and only
then acks the devices. Presence and attendance are recomputed by the pure rules in :mod:`hub.presence` and
:mod:`hub.attendance`; galleries are rebuilt from templates and published retained to every device.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import JsonValue

from edge.protocol import wire
from edge.protocol.mqtt import MqttLink, Received
from edge.recognition.gallery import Gallery
from edge.recognition.gallery_codec import build_publication
from hub.alerting import Alerting
from hub.api import RequestHandler
from hub.attendance import AttendanceRules, compute_days, day_bounds, local_day
from hub.config import HubConfig
from hub.notify import (
    MqttMessage,
    ha_discovery_messages,
    ha_is_birth,
    ha_removal_messages,
    ha_state_messages,
    ha_status_topic,
)
from hub.presence import PresenceRules, PresenceState, Role, Sighting, apply_sighting, expire
from hub.store import HubStore, ReceivedEvent

log = logging.getLogger("rollcall.hub")

MAX_BATCH = 500
CLOCK_SKEW_WARN_S = 30.0


def _role(value: str) -> Role:
    return "entrance" if value == "entrance" else "exit" if value == "exit" else "both"


@dataclass
class HubCounters:
    """What the hub has done since it started (for logs, health and tests)."""

    received: int = 0
    events_stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    acks_sent: int = 0
    batches: int = 0
    commit_latency_ms: list[float] = field(default_factory=list)


class HubService:
    """Build it with a config and an open store, :meth:`start`, :meth:`stop` (SIGTERM in the CLI)."""

    def __init__(
        self,
        config: HubConfig,
        store: HubStore,
        *,
        model_id: str,
        embedding_size: int,
        clock: Callable[[], datetime] = wire.now_utc,
        software: str = "rollcall",
        enrol_photos: Callable[[str, list[str]], JsonValue] | None = None,
        enrol_capture: Callable[[bytes], tuple[Any, float, str | None]] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.config = config
        self.max_batch = max_batch
        self.store = store
        self.model_id = model_id
        self.embedding_size = embedding_size
        self.clock = clock
        self.topics = wire.Topics(config.site.id, config.site.topic_prefix)
        self.counters = HubCounters()
        self.stop_event = threading.Event()
        self.presence_rules = PresenceRules(timeout=timedelta(hours=config.attendance.presence_timeout_h))
        self.attendance_rules = AttendanceRules(
            timezone=config.site.timezone,
            day_starts_at=config.attendance.day_starts_at,
            settle_out_after=timedelta(minutes=config.attendance.settle_out_after_min),
        )
        self._queue: queue.Queue[tuple[Received, float]] = queue.Queue()
        self._galleries_dirty = threading.Event()
        self._galleries_dirty.set()
        self._presence: dict[str, PresenceState] = {}
        self._last_retention = float("-inf")
        self._known_devices: set[str] = set()  # devices are never deleted while the hub runs
        self.store_lock = threading.RLock()
        """Held by whoever uses the store: the writer thread, or a caller driving the hub by hand (tests, tools)."""
        for camera in config.cameras:
            store.upsert_device(camera.device, name=camera.name or None, role=camera.role)
        self.link = MqttLink(
            config.mqtt,
            client_id=config.mqtt.client_id_for("hub", config.hub.id),
            status_topic=self.topics.hub_status(),
            status_entity=config.hub.id,
            software=software,
            on_message=lambda message: self._queue.put((message, time.time())),
        )
        for leaf in ("event", "snapshot", "capture", "status", "health"):
            self.link.subscribe(self.topics.all_devices(leaf), qos=1)
        self.link.subscribe(self.topics.hub_request(), qos=1)
        for leaf in ("activity", "status"):
            self.link.subscribe(self.topics.all_agents(leaf), qos=1)
        self._ha_dirty = threading.Event()
        if config.homeassistant.enabled:
            self._ha_dirty.set()
            self.link.subscribe(ha_status_topic(config.homeassistant.discovery_prefix), qos=1)
        self.api = RequestHandler(self, enrol_photos=enrol_photos, enrol_capture=enrol_capture)
        self._threads: list[threading.Thread] = []
        self._load_presence()
        self.alerting = Alerting(self, clock())

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and start the writer and maintenance threads."""
        self.link.start()
        self.alerting.start()
        self._threads = [threading.Thread(target=self._writer_loop, name="writer", daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, say ``stopped``, close nothing the caller owns."""
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout)
        self.alerting.stop()
        self.link.stop()

    # --- roles -----------------------------------------------------------------------------------------------------

    def roles(self) -> dict[str, Role]:
        """Every known device's camera role."""
        return {device.id: _role(device.role) for device in self.store.list_devices()}

    def _authorised(self, device: str) -> bool:
        if device in self._known_devices:
            return True
        if self.store.get_device(device) is not None:
            self._known_devices.add(device)
            return True
        if self.config.hub.accept_unknown_devices:
            self.store.upsert_device(device, role="both")
            self._known_devices.add(device)
            self._galleries_dirty.set()
            return True
        return False

    # --- writer ------------------------------------------------------------------------------------------------------

    def _writer_loop(self) -> None:
        # Maintenance runs on this thread too: the store has exactly one user.
        next_maintenance = 0.0
        while not self.stop_event.is_set():
            if time.monotonic() >= next_maintenance:
                self._maintenance()
                next_maintenance = time.monotonic() + 1.0
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self.handle_batch(batch)
            except Exception:  # never let one bad batch stop ingest; the devices will resend what was not acked
                log.exception("a batch of %d messages failed; nothing from it was acked", len(batch))

    def handle_batch(self, batch: list[tuple[Received, float]]) -> None:
        """Validate, store and commit a batch, then ack it (the writer thread's one job)."""
        with self.store_lock:
            self._handle_batch(batch)

    def _handle_batch(self, batch: list[tuple[Received, float]]) -> None:
        now = self.clock()
        self.counters.batches += 1
        self.counters.received += len(batch)
        events: list[ReceivedEvent] = []
        acks: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        later: list[tuple[wire.TopicRef, wire.Snapshot | wire.Capture]] = []
        agent_acks: dict[str, list[str]] = {}
        for message, _ in batch:
            if self.config.homeassistant.enabled and message.topic == ha_status_topic(
                self.config.homeassistant.discovery_prefix
            ):
                if ha_is_birth(message.topic, message.payload, self.config.homeassistant.discovery_prefix):
                    self._ha_dirty.set()  # Home Assistant restarted: it needs every discovery config again
                continue
            try:
                ref, payload = wire.decode(message.topic, message.payload)
            except wire.WireError as exc:
                self._dead_letter(message.topic, str(exc), message.payload, now)
                continue
            if ref.role == "hub":
                if isinstance(payload, wire.Request):
                    self.api.handle(payload, now)
                continue
            if ref.role == "agent" and ref.entity is not None:
                if isinstance(payload, wire.Activity):
                    self.store.insert_activity(payload, now)
                    agent_acks.setdefault(ref.entity, []).append(payload.event_id)
                elif isinstance(payload, wire.Status):
                    self.store.set_agent_status(ref.entity, payload.state, payload.at or now, now)
                continue
            if ref.role != "device" or ref.entity is None:
                continue
            if not self._authorised(ref.entity):
                self._dead_letter(message.topic, f"device {ref.entity!r} is not registered", message.payload, now)
                continue
            if isinstance(payload, wire.Event):
                skew = (now - payload.at).total_seconds()
                events.append(ReceivedEvent(payload, now, skew if abs(skew) > CLOCK_SKEW_WARN_S else None))
            elif isinstance(payload, (wire.Snapshot, wire.Capture)):
                later.append((ref, payload))
            elif isinstance(payload, wire.Status):
                self.store.upsert_device(ref.entity, status=payload.state, status_at=payload.at or now, last_seen=now)
                self._publish_ha_states(now)
            elif isinstance(payload, wire.Health):
                self.store.upsert_device(
                    ref.entity,
                    health=payload,
                    last_seen=now,
                    model_pack=payload.model_pack,
                    gallery_version=payload.gallery_version or 0,
                )
        if events:
            inserted = set(self.store.insert_events(events))
            self.counters.events_stored += len(inserted)
            self.counters.duplicates += len(events) - len(inserted)
            for received in events:
                acks[received.event.device][0].append(received.event.event_id)
            self._derive(events, inserted, now)
            for device in {r.event.device for r in events}:
                self.store.advance_delivered(device)
        for ref, payload in later:
            assert ref.entity is not None
            if isinstance(payload, wire.Snapshot):
                outcome = self.store.save_snapshot(payload.event_id, payload.data, now)
                if outcome != "unknown_event":  # its event has not arrived: no ack, the device sends it again
                    acks[ref.entity][1].append(payload.event_id)
            else:
                self.store.save_capture(payload, now)
                acks[ref.entity][0].append(payload.capture_id)
                if payload.purpose == "enrol":
                    self.api.on_enrol_capture(payload, now)
        committed = time.time()
        for _, (received_at) in batch:
            self.counters.commit_latency_ms.append((committed - received_at) * 1000)
        del self.counters.commit_latency_ms[:-10_000]
        for device, (event_ids, snapshot_ids) in acks.items():
            self._ack(device, event_ids, snapshot_ids, now)
        for agent, event_ids in agent_acks.items():
            for start in range(0, len(event_ids), wire.MAX_ACK_IDS):
                ack = wire.Ack(client=agent, at=now, event_ids=event_ids[start : start + wire.MAX_ACK_IDS])
                self.link.publish(self.topics.agent_ack(agent), ack, qos=1)

    def _dead_letter(self, topic: str, reason: str, payload: bytes, now: datetime) -> None:
        self.counters.dead_letters += 1
        log.warning("dead letter on %s: %s", topic, reason)
        self.store.record_dead_letter(topic, reason, payload, now)

    def _ack(self, device: str, event_ids: list[str], snapshot_ids: list[str], now: datetime) -> None:
        for start in range(0, max(len(event_ids), len(snapshot_ids)), wire.MAX_ACK_IDS):
            ack = wire.Ack(
                client=device,
                at=now,
                event_ids=event_ids[start : start + wire.MAX_ACK_IDS],
                snapshot_ids=snapshot_ids[start : start + wire.MAX_ACK_IDS],
            )
            self.link.publish(self.topics.device_ack(device), ack, qos=1)
            self.counters.acks_sent += 1

    # --- presence and attendance -------------------------------------------------------------------------------------

    def _load_presence(self) -> None:
        for row in self.store.presence():
            raw = self.store.get_meta(f"presence:{row.person_id}")
            if raw:
                try:
                    self._presence[row.person_id] = PresenceState.from_dict(json.loads(raw))
                except ValueError:
                    log.warning("stored presence of %s is unreadable; starting from the table row", row.person_id)

    def presence_state(self, person_id: str) -> PresenceState | None:
        """One person's presence as the hub holds it now."""
        return self._presence.get(person_id)

    def _store_presence(self, state: PresenceState, event_id: str | None, now: datetime) -> None:
        self._presence[state.person_id] = state
        self.store.set_presence(state.person_id, state.state, state.since, state.door, event_id, now)
        self.store.set_meta(f"presence:{state.person_id}", json.dumps(state.to_dict()))

    def _derive(self, events: list[ReceivedEvent], inserted: set[str], now: datetime) -> None:
        roles = self.roles()
        self.alerting.on_events(
            [(r.event, roles.get(r.event.device, "both")) for r in events if r.event.event_id in inserted], now
        )
        changed = False
        days: set[tuple[str, date]] = set()
        for received in sorted(events, key=lambda r: r.event.at):
            event = received.event
            if event.event_id not in inserted or event.person_id is None:
                continue
            if self.store.get_person(event.person_id) is None:
                continue  # a gallery older than a removal: the event is kept, but it names nobody we know
            sighting = Sighting(event.event_id, event.device, event.person_id, event.at, event.type, event.has_snapshot)
            role = roles.get(event.device, "both")
            before = self._presence.get(event.person_id)
            after = apply_sighting(before, sighting, role, self.presence_rules)
            if after != before:
                self._store_presence(after, event.event_id, now)
                changed = True
            days.add((event.person_id, local_day(event.at, self.attendance_rules)))
        for person_id, day in days:
            self.recompute_attendance(person_id, day, now, roles)
        if changed:
            self.publish_presence(now)

    def recompute_attendance(
        self, person_id: str, day: date, now: datetime, roles: dict[str, Role] | None = None
    ) -> None:
        """Recompute one person's day from its stored sightings (order-independent, so late events just work)."""
        roles = roles if roles is not None else self.roles()
        start, end = day_bounds(day, self.attendance_rules)
        sightings = [
            Sighting(event_id, device, person_id, at, "left" if kind == "left" else "seen", has_snapshot)
            for event_id, device, kind, at, has_snapshot in self.store.sightings(person_id, start, end)
        ]
        delivered = {d.id: d.delivered_through for d in self.store.list_devices() if d.delivered_through is not None}
        for result in compute_days(sightings, roles, self.attendance_rules, now, delivered):
            status = "final" if result.final else ("forgot_checkout" if result.forgot_checkout else "open")
            if not result.final and result.last_out is not None and not result.out_settled:
                status = "provisional"
            self.store.set_attendance(
                result.person_id,
                result.day,
                result.first_in,
                result.last_out,
                result.minutes_on_site * 60.0,
                status,
                now,
                first_in_event=result.first_in_event,
                last_out_event=result.last_out_event,
            )

    def presence_payload(self, now: datetime) -> wire.Presence:
        """The presence board as published."""
        people = {p.id: p.name for p in self.store.list_people()}
        entries = []
        for person_id, name in sorted(people.items()):
            state = self._presence.get(person_id)
            entries.append(
                wire.PresenceEntry(
                    person_id=person_id,
                    name=name or person_id,
                    state=state.state if state else "unknown",
                    since=state.since if state else None,
                    door=state.door if state else None,
                )
            )
        return wire.Presence(at=now, people=entries)

    def publish_presence(self, now: datetime) -> None:
        """Publish the presence board, retained (and Home Assistant's person states)."""
        board = self.presence_payload(now)
        self.link.publish(self.topics.hub_presence(), board, qos=1, retain=True)
        self._publish_ha_states(now, board)

    # --- Home Assistant ----------------------------------------------------------------------------------------------

    def mark_people_changed(self) -> None:
        """People were added, renamed or removed: galleries and Home Assistant entities follow."""
        self.mark_galleries_dirty()
        self._ha_dirty.set()

    def _publish_ha(self, messages: list[MqttMessage]) -> None:
        for message in messages:
            self.link.publish(message.topic, message.payload, qos=1, retain=message.retain)

    def _publish_ha_states(self, now: datetime, board: wire.Presence | None = None) -> None:
        if not self.config.homeassistant.enabled:
            return
        devices = [(d.id, d.status == "online", d.last_seen) for d in self.store.list_devices()]
        self._publish_ha(ha_state_messages(self.topics, board or self.presence_payload(now), devices))

    def publish_ha_discovery(self, now: datetime) -> None:
        """Every person and device as Home Assistant entities, then their current states."""
        prefix = self.config.homeassistant.discovery_prefix
        people = [(p.id, p.name or p.id) for p in self.store.list_people()]
        devices = [(d.id, d.name or d.id) for d in self.store.list_devices()]
        self._publish_ha(ha_discovery_messages(self.topics, people, devices, prefix))
        self._publish_ha_states(now)

    # --- galleries ---------------------------------------------------------------------------------------------------

    def mark_galleries_dirty(self) -> None:
        """People or templates changed: rebuild and republish every device's gallery soon."""
        self._galleries_dirty.set()

    def current_gallery(self, version: int) -> Gallery:
        """The gallery of every template for this site's model."""
        labels, embeddings = self.store.templates_for(self.model_id)
        names = {p.id: p.name or p.id for p in self.store.list_people()}
        if embeddings.size == 0:
            import numpy as np

            embeddings = np.zeros((0, self.embedding_size), dtype=np.float32)
        return Gallery(labels, embeddings, names=names, version=version, model_id=self.model_id)

    def publish_galleries(self, now: datetime) -> int:
        """Publish a new gallery version to every device, retained; returns the version."""
        version = int(self.store.get_meta("gallery_version") or "0") + 1
        gallery = self.current_gallery(version)
        for device in self.store.list_devices():
            manifest, chunks = build_publication(gallery, device.id, now)
            for chunk in chunks:
                self.link.publish(self.topics.device_gallery_chunk(device.id, chunk.index), chunk, qos=1, retain=True)
            self.link.publish(self.topics.device_gallery(device.id), manifest, qos=1, retain=True)
            self.store.upsert_device(device.id, gallery_sent_version=version)
        self.store.set_meta("gallery_version", str(version))
        log.info("gallery version %d published (%d people)", version, len(gallery))
        return version

    # --- maintenance -----------------------------------------------------------------------------------------------

    def forget_person(self, person_id: str, now: datetime) -> None:
        """After an erasure: no presence, new galleries without them, a board without them."""
        self._presence.pop(person_id, None)
        self.store.set_meta(f"presence:{person_id}", "")
        self.mark_galleries_dirty()
        if self.config.homeassistant.enabled:
            self._publish_ha(ha_removal_messages(self.topics, person_id, self.config.homeassistant.discovery_prefix))
        self.publish_presence(now)

    def _maintenance(self) -> None:
        now = self.clock()
        with self.store_lock:
            try:
                if self._galleries_dirty.is_set() and self.link.connected:
                    self._galleries_dirty.clear()
                    self.publish_galleries(now)
                timed_out = expire(self._presence.values(), now, self.presence_rules)
                for state in timed_out:
                    self._store_presence(state, None, now)
                if timed_out:
                    self.publish_presence(now)
                self.alerting.tick(now)
                if self._ha_dirty.is_set() and self.link.connected:
                    self._ha_dirty.clear()
                    self.publish_ha_discovery(now)
                if time.monotonic() - self._last_retention > 24 * 3600:
                    self._last_retention = time.monotonic()
                    retention = self.config.retention
                    events, snapshots = self.store.purge(
                        now - timedelta(days=retention.events_days), now - timedelta(days=retention.snapshots_days)
                    )
                    if events or snapshots:
                        log.info("retention: %d events and %d snapshots purged", events, snapshots)
            except Exception:
                log.exception("maintenance pass failed")
