"""Ingest: what the devices, agents and clients send, validated, stored in batches and acked after the commit.

:class:`Ingest` routes each message by (topic role, payload kind) through its handler table; bad input goes to the
dead-letter table with the reason, never crashes the hub. The batch loop and the ack sizes are in :mod:`hub.batches`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from edge.protocol import wire
from edge.protocol.mqtt import Received
from hub.alerts.runtime import Alerting
from hub.api import RequestHandler
from hub.batches import agent_acks, device_acks
from hub.board import PresenceBoard
from hub.context import HubContext
from hub.enrol import CaptureEnrolment
from hub.galleries import GalleryPublisher
from hub.gate import Dropped, Queued, topic_sender
from hub.homeassistant import HomeAssistantBridge
from hub.store import DeadLetterNote, ReceivedEvent

log = logging.getLogger("rollcall.hub")

MAX_BATCH = 500
CLOCK_SKEW_WARN_S = 30.0
DRAINED_MARGIN = timedelta(minutes=2)
"""A health report with an empty outbox proves delivery up to this long before its time (a ``left`` event is stamped
when its track ends, a moment before it reaches the outbox)."""

__all__ = ["MAX_BATCH", "HubCounters", "Ingest", "Queued"]


@dataclass
class HubCounters:
    """What the hub has done since it started (for logs, health and tests)."""

    received: int = 0
    events_stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    """Messages dead-lettered by the writer (not counting those the gate dropped: see ``IngestGate.dropped``)."""
    acks_sent: int = 0
    batches: int = 0
    commit_latency_ms: list[float] = field(default_factory=list)


@dataclass
class _Batch:
    """What one batch collects while its messages are handled, and stores and acks once they all were."""

    now: datetime
    events: list[ReceivedEvent] = field(default_factory=list)
    pictures: list[tuple[str, wire.Snapshot | wire.Capture]] = field(default_factory=list)
    """Snapshots and captures with their device, stored after the events (a snapshot needs its event)."""
    acks: dict[str, tuple[list[str], list[str]]] = field(default_factory=lambda: defaultdict(lambda: ([], [])))
    """device -> (event and capture ids, snapshot ids) to ack after the commit."""
    agent_acks: dict[str, list[str]] = field(default_factory=dict)
    dead_letters: dict[tuple[str, str], list[DeadLetterNote]] = field(default_factory=dict)
    """(sender, reason) -> the first ones one by one, then one note counting the rest (a flood costs a few rows
    and statements a batch); kept in one transaction with the batch."""


Handler = Callable[[str | None, Any, _Batch], None]
"""Handles one decoded payload of the entity (device, agent; None for the hub's own topics) within a batch."""


class Ingest:
    """Validates, stores and acks what arrives on the hub's subscriptions (the writer thread's one job)."""

    def __init__(
        self,
        context: HubContext,
        *,
        board: PresenceBoard,
        alerting: Alerting,
        requests: RequestHandler,
        enrolment: CaptureEnrolment,
        galleries: GalleryPublisher,
        homeassistant: HomeAssistantBridge,
    ) -> None:
        self.context = context
        self.store = context.store
        self.board = board
        self.alerting = alerting
        self.requests = requests
        self.enrolment = enrolment
        self.galleries = galleries
        self.homeassistant = homeassistant
        self.counters = HubCounters()
        self._known_devices: set[str] = set()  # devices are never deleted while the hub runs
        self._epochs: dict[str, set[str]] = {}  # device -> the outbox epochs it has sent events in
        self.handlers: dict[tuple[str, type[Any]], Handler] = {
            ("supervisor", wire.Request): self._request,
            ("agent", wire.Activity): self._activity,
            ("agent", wire.Status): self._agent_status,
            ("device", wire.Event): self._event,
            ("device", wire.Snapshot): self._picture,
            ("device", wire.Capture): self._picture,
            ("device", wire.Status): self._device_status,
            ("device", wire.Health): self._device_health,
        }
        """(topic role, payload class) -> handler; payloads without one are ignored."""

    def handle_batch(self, batch: list[Queued]) -> None:
        """Validate, store and commit a batch, then ack it."""
        with self.context.store_lock:
            self._handle_batch(batch)

    # --- one batch ---------------------------------------------------------------------------------------------------

    def _handle_batch(self, batch: list[Queued]) -> None:
        work = _Batch(self.context.clock())
        now = work.now
        self.counters.batches += 1
        self.counters.received += len(batch)
        for message, _ in batch:
            self._route(message, work)
        if work.events:
            self._store_events(work, now)
        self.store.record_dead_letters([note for notes in work.dead_letters.values() for note in notes], now)
        for device, payload in work.pictures:
            if isinstance(payload, wire.Snapshot):
                outcome = self.store.save_snapshot(payload.event_id, payload.data, now)
                if outcome != "unknown_event":  # its event has not arrived: no ack, the device sends it again
                    work.acks[device][1].append(payload.event_id)
            else:
                self.store.save_capture(payload, now)
                work.acks[device][0].append(payload.capture_id)
                if payload.purpose == "enrol":
                    self.enrolment.on_capture(payload, now)
        committed = time.time()
        for _, received_at in batch:
            self.counters.commit_latency_ms.append((committed - received_at) * 1000)
        del self.counters.commit_latency_ms[:-10_000]
        for device, (event_ids, snapshot_ids) in work.acks.items():
            for ack in device_acks(device, event_ids, snapshot_ids, now):
                self.context.publish(self.context.topics.device_ack(device), ack, qos=1)
                self.counters.acks_sent += 1
        for agent, event_ids in work.agent_acks.items():
            for ack in agent_acks(agent, event_ids, now):
                self.context.publish(self.context.topics.agent_ack(agent), ack, qos=1)

    def _route(self, message: Received, work: _Batch) -> None:
        if self.homeassistant.is_status(message.topic):
            self.homeassistant.on_status(message.topic, message.payload)
            return
        try:
            ref, payload = wire.decode(message.topic, message.payload)
        except wire.WireError as exc:
            self._dead_letter(message.topic, str(exc), message.payload, work)
            return
        if ref.role in ("device", "agent") and ref.entity is None:
            return
        if ref.role == "device" and ref.entity is not None and not self._authorised(ref.entity):
            self._dead_letter(message.topic, f"device {ref.entity!r} is not registered", message.payload, work)
            return
        handler = self.handlers.get((ref.role, type(payload)))
        if handler is not None:
            handler(ref.entity, payload, work)

    def _store_events(self, work: _Batch, now: datetime) -> None:
        events = work.events
        self._note_new_epochs(events)
        with self.store.write_batch():  # the events and the days they make due, in one commit
            inserted = set(self.store.insert_events(events))
            counting = self._credible(events, inserted, work)
            self.board.note_days([r for r in counting if r.event.event_id in inserted])
        self.counters.events_stored += len(inserted)
        self.counters.duplicates += len(events) - len(inserted)
        for received in events:
            work.acks[received.event.device][0].append(received.event.event_id)
        # Alerts first, then presence and attendance: the order the hub has always judged new events in.
        roles = self.board.roles()
        self.alerting.on_events(
            [(r.event, roles.get(r.event.device, "both")) for r in counting if r.event.event_id in inserted], now
        )
        self.board.apply_events(counting, inserted, now, roles)
        max_ahead_s = self.board.window.max_ahead.total_seconds()
        with self.store.write_batch():  # one commit for every device of the batch, not one each
            for device in {r.event.device for r in events}:
                self.store.advance_delivered(device, max_ahead_s=max_ahead_s)

    def _credible(self, events: list[ReceivedEvent], inserted: set[str], work: _Batch) -> list[ReceivedEvent]:
        """The events that may move alerts, presence and attendance; the others are flagged once, when first stored.

        An event dated far ahead of the hub's clock (or before the retention) is kept and acked like any other, so
        nothing accepted is lost, and a dead letter with the reason flags it where malformed messages are looked
        for: its device's clock needs setting.
        """
        counting = []
        for received in events:
            event = received.event
            refusal = self.board.window.refusal(event.at, received.received_at)
            if refusal is None:
                counting.append(received)
            elif event.event_id in inserted:
                reason = f"event {event.event_id} (seq {event.seq}) {refusal}; stored and acked, not counted"
                self._dead_letter(self.context.topics.device_event(event.device), reason, wire.encode(event), work)
        return counting

    def _note_new_epochs(self, events: list[ReceivedEvent]) -> None:
        """Say when a device starts a new outbox epoch: its numbers start again, and its old file may hold events."""
        for received in events:
            device, epoch = received.event.device, received.event.epoch or ""
            known = self._epochs.get(device)
            if known is None:
                known = self._epochs[device] = {e for e, _ in self.store.device_epochs(device)}
            if epoch in known:
                continue
            if known:
                log.warning(
                    "device %s started a new outbox (epoch %s, seq %d): its numbers count again from there; events "
                    "it never delivered from its earlier outbox (epochs %s) are only in that file, if it was kept",
                    device,
                    epoch or "none",
                    received.event.seq,
                    ", ".join(sorted(e or "none" for e in known)),
                )
            known.add(epoch)

    def _authorised(self, device: str) -> bool:
        if device in self._known_devices:
            return True
        if self.context.registered(device):
            self._known_devices.add(device)
            return True
        if self.context.config.hub.accept_unknown_devices:
            self.store.upsert_device(device, role="both")
            self._known_devices.add(device)
            self.galleries.mark_dirty()
            return True
        return False

    def _dead_letter(self, topic: str, reason: str, payload: bytes, work: _Batch) -> None:
        self.counters.dead_letters += 1
        if self.counters.dead_letters <= 100 or self.counters.dead_letters % 1000 == 0:  # a flood must not flood logs
            log.warning("dead letter on %s: %s (%d so far)", topic, reason, self.counters.dead_letters)
        sender = topic_sender(topic, self.context.topics.base)
        notes = work.dead_letters.setdefault((sender, reason), [])
        if len(notes) < self.store.dead_letter_limits.samples_per_hour:
            notes.append(DeadLetterNote(topic, reason, payload, sender))
        else:
            last = notes[-1]
            notes[-1] = DeadLetterNote(last.topic, reason, last.payload, sender, last.count + 1)

    def record_drops(self, drops: list[Dropped], now: datetime) -> None:
        """Keep what the gate dropped as counted dead letters (one row per sender and reason, with a sample)."""
        if not drops:
            return
        notes = [DeadLetterNote(d.topic, d.reason, d.sample, d.sender, d.count) for d in drops]
        with self.context.store_lock:
            self.store.record_dead_letters(notes, now)
        for drop in drops:
            log.warning("dropped %d messages of %s: %s", drop.count, drop.sender, drop.reason)

    # --- the handlers ------------------------------------------------------------------------------------------------

    def _request(self, supervisor: str | None, payload: wire.Request, work: _Batch) -> None:
        assert supervisor is not None  # the name from the request topic: the broker lets only them write there
        self.requests.handle(payload, supervisor, work.now)

    def _activity(self, agent: str | None, payload: wire.Activity, work: _Batch) -> None:
        assert agent is not None
        self.store.insert_activity(payload, work.now)
        work.agent_acks.setdefault(agent, []).append(payload.event_id)

    def _agent_status(self, agent: str | None, payload: wire.Status, work: _Batch) -> None:
        assert agent is not None
        self.store.set_agent_status(agent, payload.state, payload.at or work.now, work.now)

    def _event(self, device: str | None, payload: wire.Event, work: _Batch) -> None:
        skew = (work.now - payload.at).total_seconds()
        # Recorded past the warning level, and always past the allowed lead: the store leaves those events out.
        notable = abs(skew) > CLOCK_SKEW_WARN_S or -skew > self.board.window.max_ahead.total_seconds()
        work.events.append(ReceivedEvent(payload, work.now, skew if notable else None))

    def _picture(self, device: str | None, payload: wire.Snapshot | wire.Capture, work: _Batch) -> None:
        assert device is not None
        work.pictures.append((device, payload))

    def _device_status(self, device: str | None, payload: wire.Status, work: _Batch) -> None:
        assert device is not None
        self.store.upsert_device(device, status=payload.state, status_at=payload.at or work.now, last_seen=work.now)
        self.homeassistant.publish_states(work.now)

    def _device_health(self, device: str | None, payload: wire.Health, work: _Batch) -> None:
        assert device is not None
        self.store.upsert_device(
            device,
            health=payload,
            last_seen=work.now,
            model_pack=payload.model_pack,
            gallery_version=payload.gallery_version or 0,
        )
        if payload.outbox_depth == 0:  # everything stamped before (a margin for events still being made) is here
            self.store.note_drained(device, min(payload.at, work.now) - DRAINED_MARGIN)
