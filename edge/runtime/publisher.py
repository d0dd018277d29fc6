"""Delivery from a device's outbox to the hub: ordered QoS 1 publishes, a bounded window in flight, hub acks.

Shared by the door device and the workstation agent. A broker PUBACK only says the broker has the message; the row
leaves the outbox when the hub's ack (``.../ack``) names it. Whatever stays unacked is sent again with backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge.protocol import wire
from edge.protocol.mqtt import MqttLink, PublishFailed
from edge.runtime.failures import RepeatedFailure
from edge.runtime.outbox import MAX_BACKOFF_SHIFT, Outbox, OutboxWriteFailed

log = logging.getLogger("rollcall.link")


class OutboxPublisher:
    """Moves messages from an outbox onto the broker and deletes them when the hub acks them.

    Runs in its own thread (:meth:`run`); :meth:`wake` (after an add) and :meth:`on_ack` (from the MQTT thread) are
    safe to call from anywhere.

    A send the outbox cannot record (its disk is full) is remembered here and recorded as soon as a write works
    again; meanwhile the remembered sends count towards the message's backoff exactly as recorded ones do, so a
    full disk never turns the backoff into a resend storm.
    """

    def __init__(
        self,
        outbox: Outbox,
        link: MqttLink,
        *,
        max_in_flight: int = 100,
        resend_after_s: float = 10.0,
        max_send_per_s: float = 800.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.link = link
        self.max_in_flight = max_in_flight
        self.resend_after_s = resend_after_s
        self.max_send_per_s = max_send_per_s
        self._clock = clock
        # A token bucket of one second's sends: a backlog goes out at max_send_per_s, not as fast as acks come back.
        self._send_tokens = max_send_per_s
        self._tokens_at = clock()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: dict[str, float] = {}  # message_id -> when it was (last) published
        # Sends not yet recorded in the outbox: seq (message_id for attachments) -> (how many, when the last was).
        self._unrecorded: dict[int, tuple[int, float]] = {}
        self._unrecorded_attachments: dict[str, tuple[int, float]] = {}
        self._failures = RepeatedFailure(log, "publishing from the outbox")
        self.published = 0
        self.resent = 0
        self.acked = 0

    def wake(self) -> None:
        """Something was added (or acked): look at the outbox now instead of at the next tick."""
        self._wake.set()

    def on_ack(self, ack: wire.Ack) -> None:
        """The hub committed these: delete them from the outbox and open the window."""
        try:
            deleted = self.outbox.ack(ack.event_ids, ack.snapshot_ids)
        except OutboxWriteFailed:
            # Not deleted (the outbox has logged why): they are sent again after their backoff, the hub acks again.
            deleted = 0
        with self._lock:
            for message_id in ack.event_ids:
                self._in_flight.pop(message_id, None)
        self.acked += deleted
        self.wake()

    def in_flight(self) -> int:
        """Messages published and waiting for the hub's ack."""
        with self._lock:
            return len(self._in_flight)

    def _backed_off(
        self, attempts: int, last_sent_at: float | None, unrecorded: tuple[int, float] | None, now: float
    ) -> bool:
        """Whether a row is due counting its unrecorded sends too (the outbox's own rule, :data:`_DUE_WHERE`)."""
        if unrecorded is None:
            return True  # the outbox decided with everything it knows
        count, last = unrecorded
        shift = min(max(attempts + count - 1, 0), MAX_BACKOFF_SHIFT)
        return now >= max(last, last_sent_at or last) + self.resend_after_s * (1 << shift)

    def _record(self, sent: list[int], sent_attachments: list[str], now: float) -> None:
        """Record these sends (and any remembered ones); remember them instead while the outbox cannot write."""
        if not self._unrecorded and not self._unrecorded_attachments:
            try:  # the usual case: nothing remembered, one statement per table
                if sent:
                    self.outbox.mark_sent(sent, now)
                    sent = []
                if sent_attachments:
                    self.outbox.mark_attachments_sent(sent_attachments, now)
                return
            except OutboxWriteFailed:
                pass  # remembered below; the outbox has logged why, once
        for seq in sent:
            count, _ = self._unrecorded.get(seq, (0, now))
            self._unrecorded[seq] = (count + 1, now)
        for message_id in sent_attachments:
            count, _ = self._unrecorded_attachments.get(message_id, (0, now))
            self._unrecorded_attachments[message_id] = (count + 1, now)
        if not self._unrecorded and not self._unrecorded_attachments:
            return
        try:
            self.outbox.record_sends(self._unrecorded, self._unrecorded_attachments)
        except OutboxWriteFailed:
            return
        self._unrecorded.clear()
        self._unrecorded_attachments.clear()

    def pump(self) -> int:
        """Publish what is due, within the window; returns how many messages went out."""
        if not self.link.connected:
            return 0
        now = self._clock()
        self._record([], [], now)  # sends remembered while the disk was full, if it has room again
        elapsed = max(0.0, now - self._tokens_at)
        self._send_tokens = min(self.max_send_per_s, self._send_tokens + elapsed * self.max_send_per_s)
        self._tokens_at = now
        with self._lock:
            # Past the resend horizon a message leaves the window; outbox.due() hands it back with backoff.
            for message_id, sent_at in list(self._in_flight.items()):
                if now - sent_at >= self.resend_after_s:
                    del self._in_flight[message_id]
            room = min(self.max_in_flight - len(self._in_flight), int(self._send_tokens))
            waiting = set(self._in_flight)
        if room <= 0:
            return 0
        batch = [
            m
            for m in self.outbox.due(room + len(waiting) + len(self._unrecorded), self.resend_after_s, now)
            if m.message_id not in waiting
            and self._backed_off(m.attempts, m.last_sent_at, self._unrecorded.get(m.seq), now)
        ][:room]
        sent: list[int] = []
        sent_attachments: list[str] = []
        recorded = False
        try:
            for message in batch:
                self.link.publish(message.topic, message.payload, qos=1)
                self._send_tokens -= 1
                sent.append(message.seq)
                if message.attempts or message.seq in self._unrecorded:
                    self.resent += 1
            with self._lock:
                for message in batch:
                    self._in_flight[message.message_id] = now
            self._record(sent, [], now)
            recorded = True
            # Attachments become due once their message went out (so a snapshot never overtakes its event); one
            # query serves both the ones just released and the ones waiting for a resend.
            for attachment in self.outbox.due_attachments(
                self.max_in_flight + len(self._unrecorded_attachments), self.resend_after_s, now
            ):
                if self._send_tokens < 1:
                    break  # the rest go on a later pass, within the rate
                unrecorded = self._unrecorded_attachments.get(attachment.message_id)
                if self._backed_off(attachment.attempts, attachment.last_sent_at, unrecorded, now):
                    self.link.publish(attachment.topic, attachment.payload, qos=1)
                    self._send_tokens -= 1
                    sent_attachments.append(attachment.message_id)
        except PublishFailed as exc:
            log.warning("publish refused (%s); will retry", exc)
        self._record([] if recorded else sent, sent_attachments, now)
        self.published += len(sent)
        return len(sent)

    def run(self, stop: threading.Event, tick_s: float = 0.5) -> None:
        """Thread body: pump on every wake-up and at least every ``tick_s`` (for resends), until ``stop``."""
        while not stop.is_set():
            self._wake.wait(tick_s)
            self._wake.clear()
            try:
                while self.pump():
                    pass
                self._failures.succeeded()
            except Exception as exc:  # the outbox keeps everything; a failed pass is retried on the next tick
                self._failures.failed(exc)
        try:
            self.pump()  # one last pass on the way out: the broker may take what is ready
        except Exception as exc:
            self._failures.failed(exc)
