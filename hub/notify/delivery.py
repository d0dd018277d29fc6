"""The delivery queue: one bounded queue and thread per channel, retries with backoff, failing and recovered."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hub.notify.notification import Notification, NotificationChannel

log = logging.getLogger("rollcall.hub.notify")


@dataclass(frozen=True, slots=True)
class NotifierStats:
    """One notifier's delivery counters (a snapshot)."""

    name: str
    queued: int
    delivered: int
    failed_attempts: int
    retries: int
    gave_up: int
    overflow: int
    consecutive_failures: int
    failing: bool
    last_error: str | None
    last_ok_at: float | None
    last_error_at: float | None


class _Lane:
    """One notifier's queue, counters and thread."""

    def __init__(self, notifier: NotificationChannel, capacity: int) -> None:
        self.notifier = notifier
        self.items: deque[Notification] = deque(maxlen=capacity)
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None
        self.busy = False
        self.current: Notification | None = None
        self.cancelled: set[str] = set()
        """Ids of notifications being delivered that :meth:`NotificationQueue.discard` dropped: no more attempts."""
        self.delivered = 0
        self.failed_attempts = 0
        self.retries = 0
        self.gave_up = 0
        self.overflow = 0
        self.consecutive_failures = 0
        self.failing = False
        self.last_error: str | None = None
        self.last_ok_at: float | None = None
        self.last_error_at: float | None = None


class NotificationQueue:
    """Delivers notifications without ever blocking the caller: one bounded queue and one thread per notifier.

    ``submit`` appends to the queue of every notifier that wants the notification and returns at once; when a queue
    is full its oldest item is dropped and counted (``overflow``). Each item is tried up to ``max_attempts`` times,
    waiting ``backoff_initial`` × 2^n seconds (capped at ``backoff_max``) between tries, then dropped and counted
    (``gave_up``). After ``failing_after`` consecutive failed attempts a notifier is *failing*: ``on_failing(name,
    error)`` is called once, and ``on_recovered(name)`` when a send succeeds again. ``sleep`` (default: an
    interruptible wait) and ``clock`` (for the stats' timestamps) can be injected for tests.
    """

    def __init__(
        self,
        notifiers: Sequence[NotificationChannel],
        *,
        capacity: int = 10_000,
        max_attempts: int = 6,
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        failing_after: int = 3,
        on_failing: Callable[[str, Exception], None] | None = None,
        on_recovered: Callable[[str], None] | None = None,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        names = [notifier.name for notifier in notifiers]
        if len(set(names)) != len(names):
            raise ValueError(f"notifier names must be unique, got {names}")
        if capacity < 1 or max_attempts < 1 or failing_after < 1:
            raise ValueError("capacity, max_attempts and failing_after must be at least 1")
        if backoff_initial < 0 or backoff_max < backoff_initial:
            raise ValueError("backoff_initial must be >= 0 and backoff_max >= backoff_initial")
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.failing_after = failing_after
        self.on_failing = on_failing
        self.on_recovered = on_recovered
        self.clock = clock
        self._stop = threading.Event()
        self._sleep: Callable[[float], object] = sleep if sleep is not None else self._stop.wait
        self._closing = False
        self._lanes = {notifier.name: _Lane(notifier, capacity) for notifier in notifiers}
        self.submitted = 0
        self.unwanted = 0

    def start(self) -> None:
        """Start one delivery thread per notifier (``rollcall-notify-<name>``)."""
        for name, lane in self._lanes.items():
            if lane.thread is None:
                lane.thread = threading.Thread(
                    target=self._run, args=(lane,), name=f"rollcall-notify-{name}", daemon=True
                )
                lane.thread.start()

    def submit(self, notification: Notification) -> int:
        """Queue a notification for every notifier that wants it; never blocks. Returns how many queued it."""
        self.submitted += 1
        queued = 0
        for lane in self._lanes.values():
            try:
                wanted = lane.notifier.wants(notification)
            except Exception:
                log.exception("notifier %s: wants() failed; not queued", lane.notifier.name)
                wanted = False
            if not wanted:
                continue
            with lane.cond:
                if self._closing:
                    continue
                if len(lane.items) == lane.items.maxlen:
                    lane.overflow += 1  # the deque drops its oldest item on append
                lane.items.append(notification)
                lane.cond.notify()
            queued += 1
        if queued == 0:
            self.unwanted += 1
        return queued

    def discard(self, unwanted: Callable[[Notification], bool]) -> int:
        """Drop every queued notification for which ``unwanted`` is true (an erasure); returns how many.

        One being delivered right now is not retried after its current attempt.
        """
        dropped = 0
        for lane in self._lanes.values():
            with lane.cond:
                kept = [item for item in lane.items if not unwanted(item)]
                dropped += len(lane.items) - len(kept)
                lane.items.clear()
                lane.items.extend(kept)
                if lane.current is not None and unwanted(lane.current):
                    lane.cancelled.add(lane.current.id)
                    dropped += 1
        return dropped

    def stats(self) -> dict[str, NotifierStats]:
        """A snapshot of every notifier's counters, by name."""
        result: dict[str, NotifierStats] = {}
        for name, lane in self._lanes.items():
            with lane.cond:
                result[name] = NotifierStats(
                    name=name,
                    queued=len(lane.items) + (1 if lane.busy else 0),
                    delivered=lane.delivered,
                    failed_attempts=lane.failed_attempts,
                    retries=lane.retries,
                    gave_up=lane.gave_up,
                    overflow=lane.overflow,
                    consecutive_failures=lane.consecutive_failures,
                    failing=lane.failing,
                    last_error=lane.last_error,
                    last_ok_at=lane.last_ok_at,
                    last_error_at=lane.last_error_at,
                )
        return result

    def stop(self, timeout: float = 5.0, *, drain: bool = True) -> bool:
        """Stop taking notifications and end the threads; True when all ended within ``timeout``.

        With ``drain`` the threads first deliver what is queued, for most of the timeout; then waits and retries
        are cut short and whatever is left is abandoned (threads stuck in a send end when it times out).
        """
        deadline = time.monotonic() + timeout
        for lane in self._lanes.values():
            with lane.cond:
                self._closing = True
                lane.cond.notify_all()
        threads = [lane.thread for lane in self._lanes.values() if lane.thread is not None]
        if drain:
            drain_until = time.monotonic() + timeout * 0.8
            for thread in threads:
                thread.join(max(0.0, drain_until - time.monotonic()))
        self._stop.set()
        for lane in self._lanes.values():
            with lane.cond:
                lane.cond.notify_all()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def _run(self, lane: _Lane) -> None:
        while True:
            with lane.cond:
                while not lane.items and not self._closing and not self._stop.is_set():
                    lane.cond.wait()
                if self._stop.is_set() or not lane.items:
                    return
                item = lane.items.popleft()
                lane.busy = True
                lane.current = item
            try:
                self._deliver(lane, item)
            finally:
                with lane.cond:
                    lane.busy = False
                    lane.current = None
                    lane.cancelled.discard(item.id)

    def _deliver(self, lane: _Lane, item: Notification) -> None:
        name = lane.notifier.name
        for attempt in range(1, self.max_attempts + 1):
            try:
                lane.notifier.send(item)
            except Exception as exc:  # a notifier bug must not end its thread: count it like a failed send
                recovered = False
                with lane.cond:
                    lane.failed_attempts += 1
                    lane.consecutive_failures += 1
                    lane.last_error = str(exc) or type(exc).__name__
                    lane.last_error_at = self.clock()
                    becomes_failing = not lane.failing and lane.consecutive_failures >= self.failing_after
                    if becomes_failing:
                        lane.failing = True
                log.warning("notifier %s: attempt %d/%d failed: %s", name, attempt, self.max_attempts, exc)
                if becomes_failing:
                    self._callback(self.on_failing, name, exc)
                if attempt == self.max_attempts:
                    break
                if self._stop.is_set():
                    return
                with lane.cond:
                    if item.id in lane.cancelled:
                        return
                with lane.cond:
                    lane.retries += 1
                self._sleep(min(self.backoff_initial * 2 ** (attempt - 1), self.backoff_max))
                if self._stop.is_set():
                    return
                with lane.cond:
                    if item.id in lane.cancelled:
                        return
            else:
                with lane.cond:
                    lane.delivered += 1
                    lane.consecutive_failures = 0
                    lane.last_ok_at = self.clock()
                    recovered = lane.failing
                    lane.failing = False
                if recovered:
                    log.info("notifier %s: delivering again", name)
                    self._callback(self.on_recovered, name)
                return
        with lane.cond:
            lane.gave_up += 1
        log.error("notifier %s: gave up on notification %s after %d attempts", name, item.id, self.max_attempts)

    @staticmethod
    def _callback(callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("notification queue: callback %r failed", callback)
