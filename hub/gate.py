"""The ingest gate: size and rate limits per sender, and a bounded queue the writer drains fairly, sender by sender.

The MQTT thread hands every message to :meth:`IngestGate.offer`, which never blocks: a message over a limit is
dropped and counted (its sender sends again whatever the hub never acked), anything else waits in its sender's lane.
The writer takes messages round-robin across the lanes, so one sender's backlog never delays another sender.
A sender is the device, agent or supervisor in the topic (``device/<id>``, ``agent/<id>``, ``supervisor/<name>``);
the hub's own topics are one sender (``hub``), anything else another (``other``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from edge.protocol.mqtt import Received
from hub.config import IngestSettings

Queued = tuple[Received, float]
"""A message as the MQTT thread queued it, with the ``time.time()`` it arrived (for commit latency)."""

SAMPLE_BYTES: Final = 4096
"""Bytes of the first dropped message kept as the sample of its kind."""
MAX_DROP_KINDS: Final = 1000
"""Kinds of drop (sender, reason) counted apart between two flushes; more are counted under the sender ``*``."""
MAX_IDLE_BUCKETS: Final = 10_000
"""Rate buckets kept before the full (idle) ones are forgotten: a full bucket is the same as a new one."""


def topic_sender(topic: str, base: str) -> str:
    """Who a topic speaks for: ``device/<id>``, ``agent/<id>``, ``supervisor/<name>``, ``hub``.

    ``base`` is ``<prefix>/<site>``.
    """
    if not topic.startswith(base + "/"):
        return "other"
    parts = topic[len(base) + 1 :].split("/", 2)
    if parts[0] in ("device", "agent", "supervisor") and len(parts) >= 2 and parts[1]:
        return f"{parts[0]}/{parts[1]}"[:200]
    return "hub" if parts[0] == "hub" else "other"


class TokenBucket:
    """``rate`` units a second, up to ``burst`` saved up; :meth:`take` says whether ``amount`` is there now."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def refill(self, now: float) -> None:
        """Add what the time since the last look earned, up to ``burst``."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, amount: float, now: float) -> bool:
        """Spend ``amount`` if it is there."""
        self.refill(now)
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True

    def full(self, now: float) -> bool:
        """Whether nothing was spent lately (the bucket can be forgotten)."""
        self.refill(now)
        return self.tokens >= self.burst


@dataclass
class Dropped:
    """Messages of one sender dropped for one reason since the last flush, with the first one as a sample."""

    topic: str
    sender: str
    reason: str
    sample: bytes
    count: int = 0


@dataclass
class _Lane:
    messages: deque[Queued] = field(default_factory=deque)
    bytes: int = 0


class IngestGate:
    """The bounded, fair queue between the MQTT thread (:meth:`offer`) and the writer (:meth:`get`)."""

    def __init__(self, settings: IngestSettings, base: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.base = base
        self.clock = clock
        self.max_message_bytes = settings.max_message_kb * 1024
        self.max_queue_bytes = settings.queue_mb * 1024 * 1024
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._lanes: OrderedDict[str, _Lane] = OrderedDict()
        """Senders with messages waiting, in the order the writer serves them next."""
        self._buckets: dict[str, tuple[TokenBucket, TokenBucket]] = {}
        self._size = 0
        self._bytes = 0
        self._drops: dict[tuple[str, str], Dropped] = {}
        self.accepted = 0
        self.dropped: dict[str, int] = {"size": 0, "rate": 0, "sender_queue": 0, "queue": 0}
        """Messages dropped since start, by cause."""

    # --- the MQTT thread -----------------------------------------------------------------------------------------

    def offer(self, message: Received) -> bool:
        """Queue ``message`` for the writer, or drop and count it; never blocks. Returns whether it was queued."""
        sender = topic_sender(message.topic, self.base)
        size = len(message.payload)
        settings = self.settings
        with self._lock:
            now = self.clock()
            if size > self.max_message_bytes:
                return self._drop(message, sender, "size", f"{size} bytes is over ingest.max_message_kb")
            messages, volume = self._bucket(sender, now)
            if not messages.take(1, now):
                return self._drop(
                    message, sender, "rate", f"over ingest.sender_messages_per_s ({settings.sender_messages_per_s:g})"
                )
            if not volume.take(size, now):
                messages.tokens += 1  # not spent after all
                limit = f"over ingest.sender_mb_per_s ({settings.sender_mb_per_s:g})"
                return self._drop(message, sender, "rate", limit)
            lane = self._lanes.get(sender)
            if lane is not None and len(lane.messages) >= settings.sender_queue_messages:
                return self._drop(
                    message,
                    sender,
                    "sender_queue",
                    f"{len(lane.messages)} messages of this sender wait (ingest.sender_queue_messages)",
                )
            if self._size >= settings.queue_messages or self._bytes + size > self.max_queue_bytes:
                return self._drop(
                    message, sender, "queue", "the hub's queue is full (ingest.queue_messages, ingest.queue_mb)"
                )
            if lane is None:
                lane = self._lanes[sender] = _Lane()
            lane.messages.append((message, time.time()))
            lane.bytes += size
            self._size += 1
            self._bytes += size
            self.accepted += 1
            self._ready.notify()
            return True

    def _bucket(self, sender: str, now: float) -> tuple[TokenBucket, TokenBucket]:
        buckets = self._buckets.get(sender)
        if buckets is None:
            if len(self._buckets) >= MAX_IDLE_BUCKETS:
                self._buckets = {s: b for s, b in self._buckets.items() if not (b[0].full(now) and b[1].full(now))}
            settings = self.settings
            megabyte = 1024 * 1024
            buckets = (
                TokenBucket(settings.sender_messages_per_s, settings.sender_burst, now),
                TokenBucket(settings.sender_mb_per_s * megabyte, settings.sender_burst_mb * megabyte, now),
            )
            self._buckets[sender] = buckets
        return buckets

    def _drop(self, message: Received, sender: str, cause: str, reason: str) -> bool:
        self.dropped[cause] += 1
        key = (sender, reason)
        if key not in self._drops and len(self._drops) >= MAX_DROP_KINDS:
            key = ("*", reason)  # a sender per message (ids made up): counted together
        note = self._drops.get(key)
        if note is None:
            note = self._drops[key] = Dropped(
                message.topic, key[0], f"dropped before the writer: {reason}", message.payload[:SAMPLE_BYTES]
            )
        note.count += 1
        return False

    # --- the writer thread ---------------------------------------------------------------------------------------

    def get(self, block: bool = True, timeout: float | None = None) -> Queued:
        """The next message, round-robin across senders; raises :class:`queue.Empty` like :meth:`queue.Queue.get`."""
        with self._lock:
            if block:
                self._ready.wait_for(lambda: self._size > 0, timeout)
            if self._size == 0:
                raise queue.Empty
            sender, lane = next(iter(self._lanes.items()))
            item = lane.messages.popleft()
            size = len(item[0].payload)
            lane.bytes -= size
            self._size -= 1
            self._bytes -= size
            if lane.messages:
                self._lanes.move_to_end(sender)
            else:
                del self._lanes[sender]
            return item

    def get_nowait(self) -> Queued:
        """:meth:`get` without waiting."""
        return self.get(block=False)

    def take_drops(self) -> list[Dropped]:
        """What was dropped since the last call, one entry per sender and reason (to be kept as dead letters)."""
        with self._lock:
            drops, self._drops = list(self._drops.values()), {}
        return drops

    def qsize(self) -> int:
        """Messages waiting for the writer."""
        with self._lock:
            return self._size

    def waiting(self, sender: str) -> int:
        """Messages of one sender waiting for the writer."""
        with self._lock:
            lane = self._lanes.get(sender)
            return 0 if lane is None else len(lane.messages)
