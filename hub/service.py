"""The hub service behind ``rollcall hub run``: the composition root that builds the hub's parts, wires and runs them.

One ``writer`` thread owns every write: it drains what the MQTT thread queued (through the limits of
:class:`~hub.gate.IngestGate`, sender by sender) into :class:`~hub.ingest.Ingest`
(validate against the wire contract, commit a batch, only then ack the devices) and runs the maintenance between
batches (galleries, presence timeouts, alerts, Home Assistant, retention). Presence and attendance are recomputed by
the pure rules in :mod:`hub.domain` (:class:`~hub.board.PresenceBoard`); galleries are rebuilt from templates and
published retained to every device (:class:`~hub.galleries.GalleryPublisher`). Enrolment (decoding and embedding
pictures) runs on its own ``enrolment`` thread (:class:`~hub.enrol.EnrolmentWorker`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from edge.protocol import wire
from edge.protocol.mqtt import MqttLink, Received
from edge.runtime.systemd import SystemdNotifier
from hub import retention
from hub.alerts.runtime import Alerting
from hub.api import RequestHandler
from hub.batches import drain_batches
from hub.board import PresenceBoard
from hub.config import HubConfig
from hub.context import HubContext
from hub.enrol import AssessPhotos, CaptureEnrolment, EmbedCapture, EnrolmentWorker
from hub.facts import SiteFacts
from hub.galleries import GalleryPublisher
from hub.gate import IngestGate, Queued
from hub.homeassistant import HomeAssistantBridge
from hub.ingest import MAX_BATCH, HubCounters, Ingest
from hub.store import DeadLetterLimits, HubStore

log = logging.getLogger("rollcall.hub")

SIGNOFF_EVERY_S = 60
"""How often the writer runs the sign-off sweep over past days that are not final yet."""
ATTENDANCE_LAG_S = 5.0
"""Under a steady stream of messages, the longest an attendance recompute waits before the writer takes a slice."""
ATTENDANCE_RETRY_S = 5.0
"""After a failed recompute, how long the writer leaves the due days alone (no busy loop of failures)."""
ATTENDANCE_SLICE = 500
"""How many (person, day) pairs one such slice recomputes (20-40 ms on the 2-core development machine)."""


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
        assess_photos: AssessPhotos | None = None,
        enrol_capture: EmbedCapture | None = None,
        max_batch: int = MAX_BATCH,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or SystemdNotifier()
        """READY=1 once started, WATCHDOG=1 from the writer thread (a wedged writer gets the hub restarted by
        systemd's WatchdogSec), STOPPING=1 on the way out; a no-op outside systemd."""
        self.max_batch = max_batch
        self.store = store
        self.model_id = model_id
        self.embedding_size = embedding_size
        self.clock = clock
        self.topics = wire.Topics(config.site.id, config.site.topic_prefix)
        self.stop_event = threading.Event()
        self.gate = IngestGate(config.ingest, self.topics.base)
        """The MQTT thread's only work: size and rate limits per sender, then a fair bounded queue for the writer."""
        kept = config.dead_letters
        store.dead_letter_limits = DeadLetterLimits(kept.samples_per_hour, kept.reasons_per_hour, kept.max_rows)
        self.enrolment = EnrolmentWorker(config.enrolment.max_waiting)
        self._next_signoff = float("-inf")
        self._attendance_retry_at = float("-inf")  # monotonic; set after a failed attendance recompute
        self.store_lock = threading.RLock()
        """Held by whoever uses the store: the writer thread, or a caller driving the hub by hand (tests, tools)."""
        erased_again = store.reapply_erasures(clock())
        if erased_again:
            log.warning("%d people in the erasure ledger were in the database again and are erased", len(erased_again))
        for camera in config.cameras:
            named = {"name": camera.name} if camera.name else {}  # else a name given with `devices rename` stays
            store.upsert_device(camera.device, role=camera.role, **named)
        self.link = MqttLink(
            config.mqtt,
            client_id=config.mqtt.client_id_for("hub", config.hub.id),
            status_topic=self.topics.hub_status(),
            status_entity=config.hub.id,
            software=software,
            on_message=self._arrived,
        )
        for leaf in ("event", "snapshot", "capture", "status", "health"):
            self.link.subscribe(self.topics.all_devices(leaf), qos=1)
        self.link.subscribe(self.topics.all_supervisor_requests(), qos=1)
        for leaf in ("activity", "status"):
            self.link.subscribe(self.topics.all_agents(leaf), qos=1)
        context = HubContext(
            config, store, self.store_lock, self.link.publish, self.topics, clock, model_id, embedding_size
        )
        self.context = context
        self.galleries = GalleryPublisher(context)
        self.board = PresenceBoard(context)
        self.homeassistant = HomeAssistantBridge(context, presence=self.board.payload)
        if self.homeassistant.enabled:  # else no listener: a published board is not built as objects too
            self.board.after_publish(self.homeassistant.publish_states)
        if self.homeassistant.enabled:
            self.link.subscribe(self.homeassistant.status_topic, qos=1)
        self.alerting = Alerting(
            config,
            store,
            self.store_lock,
            SiteFacts(context, self.board),
            lambda alert: self.link.publish(self.topics.hub_alert(), alert, qos=1),
            clock(),
        )
        self.api = RequestHandler(
            context,
            board=self.board,
            galleries=self.galleries,
            alerting=self.alerting,
            people_changed=self.mark_people_changed,
            person_erased=self.forget_person,
            worker=self.enrolment,
            assess_photos=assess_photos,
        )
        self.ingest = Ingest(
            context,
            board=self.board,
            alerting=self.alerting,
            requests=self.api,
            enrolment=CaptureEnrolment(context, enrol_capture, self.galleries.mark_dirty, self.enrolment),
            galleries=self.galleries,
            homeassistant=self.homeassistant,
        )
        self.counters: HubCounters = self.ingest.counters
        self._threads: list[threading.Thread] = []

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and start the writer and maintenance threads."""
        if self.config.supervisors is None:
            log.warning(
                "no [supervisors] table in the hub config: every supervisor name is admin (fine for a demo; on a "
                'site list each one as [supervisors.<name>] role = "viewer" | "operator" | "admin")'
            )
        with self.store_lock:
            self.sign_off(self.clock())  # days that ended while the hub was down are signed off now
        self.link.start()
        self.alerting.start()
        self.enrolment.start()
        self._threads = [threading.Thread(target=self._writer_loop, name="writer", daemon=True)]
        for thread in self._threads:
            thread.start()
        self.notifier.ready(f"hub {self.config.hub.id} for site {self.config.site.id}")

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, say ``stopped``, close nothing the caller owns."""
        self.notifier.stopping()
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout)
        self.enrolment.stop(timeout)
        self.alerting.stop()
        self.link.stop()

    def _arrived(self, message: Received) -> None:
        # On the MQTT thread: never block it, never do more than the gate's checks.
        self.gate.offer(message)

    # --- the writer thread -------------------------------------------------------------------------------------------

    def _writer_loop(self) -> None:
        # Maintenance runs on this thread too: the store has exactly one user.
        next_maintenance = 0.0

        def maintenance_when_due() -> None:
            nonlocal next_maintenance
            self._publish_board_if_due()
            if time.monotonic() >= next_maintenance:
                self._maintenance()
                next_maintenance = time.monotonic() + 1.0

        def settle_when_due() -> None:
            self._settle_attendance_if_due()
            maintenance_when_due()

        def wait_s() -> float:  # no longer than until a pending presence board is due; not at all while days wait
            if self.board.attendance_due_for_s() is not None and time.monotonic() >= self._attendance_retry_at:
                return 0.0
            due = self.board.due_in()
            return 0.2 if due is None else min(0.2, due)

        drain_batches(
            self.gate,
            self._handle_safely,
            self.stop_event,
            max_batch=self.max_batch,
            wait_s=wait_s,
            before_wait=settle_when_due,
        )
        with self.store_lock:  # stopping: what the last batches made due is recomputed before the hub exits
            self._settle_attendance(None)

    def _settle_attendance_if_due(self) -> None:
        """Between batches: recompute a slice of the attendance days new events made due, when it costs no message.

        A slice (``ATTENDANCE_SLICE`` days, tens of milliseconds) whenever no message waits, and the writer comes
        straight back for the next; under a steady stream, a slice once the oldest waited ``ATTENDANCE_LAG_S``. So a
        burst delays a day's figures by seconds, and the presence board by one slice at most.
        """
        waited = self.board.attendance_due_for_s()
        if waited is None or time.monotonic() < self._attendance_retry_at:
            return
        if self.gate.qsize() == 0 or waited >= ATTENDANCE_LAG_S:
            with self.store_lock:
                self._settle_attendance(ATTENDANCE_SLICE)

    def _settle_attendance(self, limit: int | None) -> None:
        try:
            self.board.settle_attendance(self.clock(), limit)
        except Exception:  # the pairs stay due in the store: a later pass (or the next start) tries again
            self._attendance_retry_at = time.monotonic() + ATTENDANCE_RETRY_S
            log.exception(
                "could not recompute the attendance of the days new events changed; trying again in %.0f s",
                ATTENDANCE_RETRY_S,
            )

    def _publish_board_if_due(self) -> None:
        """Between batches: the presence board, coalesced (at most one each ``PUBLISH_EVERY_S``, the latest state)."""
        with self.store_lock:
            try:
                self.board.publish_if_due()
            except Exception:
                log.exception("could not publish the presence board; trying again after the next batch")

    def _handle_safely(self, batch: list[Queued]) -> None:
        try:
            self.ingest.handle_batch(batch)
        except Exception:  # never let one bad batch stop ingest; the devices will resend what was not acked
            log.exception("a batch of %d messages failed; nothing from it was acked", len(batch))

    def handle_batch(self, batch: list[Queued]) -> None:
        """Validate, store and commit a batch, ack it, and recompute the attendance it changed, all at once.

        For callers driving the hub by hand (tools, tests); the writer thread defers the attendance while messages
        wait (:meth:`_settle_attendance_if_due`).
        """
        self.ingest.handle_batch(batch)
        with self.store_lock:
            self.board.settle_attendance(self.clock())

    def _maintenance(self) -> None:
        self.notifier.watchdog()  # from the writer thread: it proves the store's one user still turns
        if self.notifier.enabled:
            counters = self.counters
            connected = "connected" if self.link.connected else "broker unreachable"
            self.notifier.status(f"{connected}; {counters.events_stored} events stored, {counters.dead_letters} dead")
        now = self.clock()
        try:
            self.ingest.record_drops(self.gate.take_drops(), now)
        except Exception:
            log.exception("could not keep the counts of dropped messages")
        with self.store_lock:
            try:
                if self.link.connected:
                    self.galleries.publish_if_dirty(now)
                self.board.expire(now)
                if time.monotonic() >= self._next_signoff:
                    self.sign_off(now)
                self.alerting.tick(now)
                if self.link.connected:
                    self.homeassistant.publish_if_dirty(now)
                self.run_retention_if_due(now)
            except Exception:
                log.exception("maintenance pass failed")

    def sign_off(self, now: datetime) -> int:
        """The sign-off sweep (at start-up and every ``SIGNOFF_EVERY_S``): past days become final without events."""
        self._next_signoff = time.monotonic() + SIGNOFF_EVERY_S
        try:
            return self.board.sign_off(now)
        except Exception:
            log.exception("the sign-off sweep failed; it runs again in %d s", SIGNOFF_EVERY_S)
            return 0

    def run_retention_if_due(self, now: datetime) -> dict[str, int] | None:
        """The daily purge, when the site's clock has passed ``retention.run_at`` since the last one; its counts."""
        last = self.store.get_meta("retention_last_run")
        zone = ZoneInfo(self.config.site.timezone)
        if not retention.due(datetime.fromisoformat(last) if last else None, now, self.config.retention, zone):
            return None
        counts = retention.purge(self.store, retention.Cutoffs.at(now, self.config.retention))
        self.store.set_meta("retention_last_run", now.isoformat())
        if any(counts.values()):
            log.info("retention: purged %s", ", ".join(f"{n} {kind}" for kind, n in counts.items() if n))
        return counts

    # --- changes that several parts follow -------------------------------------------------------------------------

    def presence_payload(self, now: datetime) -> wire.Presence:
        """The presence board as published."""
        return self.board.payload(now)

    def mark_galleries_dirty(self) -> None:
        """People or templates changed: rebuild and republish every device's gallery soon."""
        self.galleries.mark_dirty()

    def mark_people_changed(self) -> None:
        """People were added, renamed or removed: galleries and Home Assistant entities follow."""
        self.galleries.mark_dirty()
        self.homeassistant.mark_dirty()
        self.board.people_changed()

    def forget_person(self, person_id: str, now: datetime) -> None:
        """After an erasure: no presence, new galleries without them, a board without them."""
        self.board.forget(person_id)
        self.galleries.mark_dirty()
        self.homeassistant.forget_person(person_id)
        self.board.publish(now)
