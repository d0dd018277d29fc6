"""The workstation agent service behind ``rollcall agent run``.

Threads (named, one stop event): ``agent-capture`` grabs the screen and publishes a retained thumbnail when it
changed (and full screenshots on request), ``agent-activity`` samples input idle time and the active window and
stores merged activity batches in the outbox, ``agent-commands`` shows messages and locks the screen, ``publisher``
moves the outbox to the broker (the door device's :class:`OutboxPublisher`), and ``agent-files`` (watchdog) logs
changes in watched folders. SIGTERM: a last batch with ``session: "end"``, publish what is ready, ``stopped``.
"""

from __future__ import annotations

import getpass
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from PIL import Image
from ulid import ULID

from edge.agent.activity import IntervalMerger, Unavailable, XActivity, decide_state
from edge.agent.commands import Desktop
from edge.agent.config import AgentConfig
from edge.agent.files import FileWatcher
from edge.agent.screen import (
    CaptureUnavailable,
    ScreenCapture,
    changed_fraction,
    encode_screenshot,
    small_grey,
    thumbnail,
)
from edge.protocol import wire
from edge.runtime.device import DeviceService
from edge.runtime.failures import RepeatedFailure
from edge.runtime.outbox import OutboxFull, OutboxWriteFailed
from edge.runtime.systemd import SystemdNotifier

log = logging.getLogger("rollcall.agent")

COMMAND_MAX_AGE_S = 300.0
"""Commands older than this (queued at the broker while the agent was off) are logged and not carried out."""
STOP_ACK_WAIT_S = 3.0
"""On a clean stop, how long to wait for the hub to ack the last batch before leaving it in the outbox."""
_MAX_INTERVALS = 500
_MAX_FILES = 1000
_SIZE_HEADROOM = 512
_DUMMY_ULID = "0" * 26

Session = Literal["start", "end"] | None


def software_line(software: str, config: AgentConfig) -> str:
    """The retained status's ``software``: the version and what is collected, visible to anyone watching."""
    what = ", ".join(["activity", *config.collected()])
    return f"{software} agent (collecting: {what})"[:256]


def split_activity(
    agent: str,
    at: datetime,
    intervals: list[wire.ActivityInterval],
    files: list[wire.FileChange],
    window: wire.WindowInfo | None,
    *,
    session: Session = None,
    user: str | None = None,
    limit: int = wire.MAX_PAYLOAD_BYTES,
) -> list[tuple[list[wire.ActivityInterval], list[wire.FileChange]]]:
    """Cut intervals and file changes into pieces whose Activity payloads stay within the schema and ``limit``."""

    def fits(ivs: list[wire.ActivityInterval], fs: list[wire.FileChange]) -> bool:
        if len(ivs) > _MAX_INTERVALS or len(fs) > _MAX_FILES:
            return False
        probe = wire.Activity(
            event_id=_DUMMY_ULID,
            agent=agent,
            seq=0,
            at=at,
            user=user,
            session=session,
            intervals=ivs,
            window=window,
            files=fs,
        )
        return len(wire.encode(probe)) + _SIZE_HEADROOM <= limit

    pending = [(intervals, files)]
    out: list[tuple[list[wire.ActivityInterval], list[wire.FileChange]]] = []
    while pending:
        ivs, fs = pending.pop(0)
        if fits(ivs, fs) or (len(ivs) <= 1 and len(fs) <= 1):
            out.append((ivs, fs))
        elif len(fs) >= len(ivs):
            half = len(fs) // 2
            pending[:0] = [(ivs, fs[:half]), ([], fs[half:])]
        else:
            half = len(ivs) // 2
            pending[:0] = [(ivs[:half], fs), (ivs[half:], [])]
    return out or [([], [])]


@dataclass
class AgentState:
    """What the service knows about itself (for logs, status and tests)."""

    started: float = field(default_factory=time.monotonic)
    last_screen_change: float = field(default_factory=time.monotonic)
    screen_checked: bool = False
    locked_since: float | None = None
    thumbnails: int = 0
    screenshots: int = 0
    batches: int = 0
    problems: list[str] = field(default_factory=list)


class AgentService(DeviceService):
    """One workstation agent. Build it, :meth:`start` it, :meth:`stop` it (or :meth:`run` until SIGTERM)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        software: str = "rollcall",
        notifier: SystemdNotifier | None = None,
        display: str | None = None,
        sample_s: float = 1.0,
        desktop: Desktop | None = None,
        clock: Callable[[], datetime] = wire.now_utc,
    ) -> None:
        self.config = config
        self.agent = config.agent.id
        self.state = AgentState()
        self.display = display
        self.sample_s = sample_s
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self.user: str | None = getpass.getuser()[:256]
        except (KeyError, OSError):
            self.user = None
        self.collecting = config.collected()
        self.desktop = desktop or Desktop(
            lock_command=config.commands.lock_command,
            unlock_command=config.commands.unlock_command,
            allow_lock=config.commands.allow_lock,
        )
        self.desktop.on_unlocked = self._unlocked

        data_dir = config.agent.data_dir
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        super().__init__(
            role="agent",
            entity=self.agent,
            site=config.site,
            mqtt=config.mqtt,
            outbox=config.outbox,
            data_dir=data_dir,
            software=software_line(software, config),
            notifier=notifier,
            logger=log,
        )
        self.link.subscribe(self.topics.agent_command(self.agent), qos=1)
        self.files = (
            FileWatcher(config.files.watch, config.files.include, config.files.exclude, clock=clock)
            if config.files.enabled
            else None
        )
        self.merger = IntervalMerger(max_gap_s=max(30.0, 5 * sample_s))
        self._commands: queue.Queue[wire.AgentCommand | str] = queue.Queue()
        self._screenshots: queue.Queue[wire.AgentCommand] = queue.Queue()
        self._x: XActivity | None = None
        self._x_checked = False
        self._threads: list[threading.Thread] = []

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (in the background: an offline agent keeps collecting), announce itself, start every thread."""
        summary = ", ".join(self.collecting) or "nothing beyond activity"
        log.info("rollcall agent %s starting; collecting: activity, %s", self.agent, summary)
        self._store_batch(session="start", sample=False)
        self.link.start()
        if self.files is not None:
            self.files.start()
            self.state.problems += self.files.problems
        self._threads = [
            threading.Thread(target=self._capture_loop, name="agent-capture", daemon=True),
            threading.Thread(target=self._activity_loop, name="agent-activity", daemon=True),
            threading.Thread(target=self._commands_loop, name="agent-commands", daemon=True),
            threading.Thread(target=self.publisher.run, args=(self.stop_event,), name="publisher", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._commands.put(
            f"rollcall agent is running on this computer (agent {self.agent}, site {self.config.site.id}): "
            f"collecting activity (active/idle times){', ' if self.collecting else ''}{', '.join(self.collecting)}. "
            "A supervisor may send messages, ask for a screenshot or lock the screen; you will be told."
        )
        self.notifier.ready(f"agent {self.agent} running; collecting: activity, {summary}")

    def stop(self, timeout: float = 10.0) -> None:
        """Last batch (``session: "end"``), flush, ``stopped``; threads end, the outbox closes."""
        self.notifier.stopping()
        self.stop_event.set()
        for thread in self._threads:
            if thread.name != "publisher":
                thread.join(timeout)
        if self.files is not None:
            self.files.stop()
        self._store_batch(session="end")
        if self._x is not None:
            self._x.close()
        self.publisher.wake()
        for thread in self._threads:
            if thread.name == "publisher":
                thread.join(timeout)
        if self.link.connected:
            self.publisher.pump()
            deadline = time.monotonic() + STOP_ACK_WAIT_S
            while self.outbox.stats().depth and time.monotonic() < deadline and self.link.connected:
                time.sleep(0.05)
        self.link.stop()
        self.desktop.close()
        self.outbox.close()
        log.info("rollcall agent %s stopped", self.agent)

    # --- screen --------------------------------------------------------------------------------------------------

    def _capture_loop(self) -> None:
        cfg = self.config.capture
        try:
            capture = ScreenCapture(self.display)
        except CaptureUnavailable as exc:
            self._problem(f"screen: {exc}")
            while not self.stop_event.is_set():  # screenshots asked for are answered in the log
                try:
                    command = self._screenshots.get(timeout=0.5)
                except queue.Empty:
                    continue
                log.error("screenshot %s not taken: %s", command.command_id, exc)
            return
        tick = max(0.25, min(2.0, cfg.min_interval_s / 4))
        previous = published = None
        last_publish = float("-inf")
        pending: wire.Screen | None = None
        try:
            while not self.stop_event.is_set():
                image: Image.Image | None = None
                # Change detection feeds the static-screen check too, which matters only without input idle time.
                if cfg.thumbnails or self._x is None or self._x.idle_problem is not None:
                    image = capture.grab()
                    grey = small_grey(image)
                    now = time.monotonic()
                    if changed_fraction(previous, grey) >= cfg.change_threshold:
                        self.state.last_screen_change = now
                    previous = grey
                    self.state.screen_checked = True
                    if cfg.thumbnails:
                        fraction = changed_fraction(published, grey)
                        if fraction >= cfg.change_threshold and now - last_publish >= cfg.min_interval_s:
                            pending = thumbnail(
                                self.agent, image, self._clock(), fraction, cfg.thumbnail_width, cfg.format
                            )
                            published, last_publish = grey, now
                # Latest only: a thumbnail made while offline waits here and is replaced by newer ones.
                if pending is not None and self.link.connected:
                    self.link.publish(self.topics.agent_thumbnail(self.agent), pending, qos=1, retain=True)
                    self.state.thumbnails += 1
                    pending = None
                try:
                    command = self._screenshots.get(timeout=tick)
                except queue.Empty:
                    continue
                self._screenshot(capture, command, previous)
        except Exception:
            log.exception("screen capture failed; thumbnails stop until the agent restarts")
            self._problem("screen capture failed (see the log)")
        finally:
            capture.close()

    def _screenshot(self, capture: ScreenCapture, command: wire.AgentCommand, previous: Image.Image | None) -> None:
        image = capture.grab()
        fraction = changed_fraction(previous, small_grey(image))
        payload = encode_screenshot(self.agent, image, self._clock(), fraction)
        self.link.publish(self.topics.agent_screenshot(self.agent), payload, qos=1)
        self.state.screenshots += 1
        log.info(
            "full screenshot for command %s (%dx%d, %d bytes)",
            command.command_id,
            payload.width,
            payload.height,
            len(payload.data),
        )

    # --- activity ------------------------------------------------------------------------------------------------

    def _activity_loop(self) -> None:
        try:
            self._x = XActivity(self.display)
            if self._x.idle_problem:
                self._problem(self._x.idle_problem)
        except Unavailable as exc:
            self._problem(f"activity: {exc}")
        self._x_checked = True
        interval = self.config.activity.publish_interval_s
        next_batch = time.monotonic() + interval
        watchdog = self.notifier.watchdog_interval_s
        failures = RepeatedFailure(log, "activity sampling")
        while not self.stop_event.wait(self.sample_s):
            try:
                self.sample()
                if time.monotonic() >= next_batch:
                    next_batch = time.monotonic() + interval
                    self._store_batch(sample=False)
                failures.succeeded()
            except Exception as exc:  # logged once while it repeats, not every second
                failures.failed(exc)
            if watchdog is not None:
                self.notifier.watchdog()

    def sample(self) -> None:
        """Observe the input state once and feed it to the interval merger."""
        at = self._clock()
        now = time.monotonic()
        x = self._x
        idle_s = x.idle_seconds() if x is not None else None
        static_s = now - self.state.last_screen_change if self.state.screen_checked else None
        with self._lock:
            locked_since = self.state.locked_since
            if locked_since is not None and idle_s is not None and idle_s + 2.0 < now - locked_since:
                # Input after the lock: the person unlocked the screen themselves.
                self.state.locked_since = locked_since = None
                log.info("input after the lock: the screen counts as unlocked")
        state = decide_state(
            locked=locked_since is not None,
            input_idle_s=idle_s,
            static_s=static_s,
            idle_after_s=self.config.activity.idle_after_s,
        )
        if state is None:
            return
        since = None
        if state == "idle":
            quiet = idle_s if idle_s is not None else static_s
            since = at - timedelta(seconds=quiet) if quiet is not None else None
        self.merger.add(state, at, since)

    def _window(self) -> wire.WindowInfo | None:
        if not self.config.activity.window_titles or not self._x_checked:
            return None
        if self._x is None:
            return wire.WindowInfo(title=None, app=None)  # unavailable here (Wayland): say so with nulls
        return self._x.active_window()

    def _store_batch(self, session: Session = None, sample: bool = True) -> None:
        """Close the current batch: merged intervals, the active window, file changes; into the outbox."""
        if sample:
            try:
                self.sample()
            except Exception:
                log.exception("activity sampling failed")
        at = self._clock()
        intervals = self.merger.take(at)
        files = self.files.batch.take() if self.files is not None else []
        if session is None and not intervals and not files:
            return
        try:
            window = self._window()
        except Exception:
            log.exception("active window query failed")
            window = None
        pieces = split_activity(self.agent, at, intervals, files, window, session=session, user=self.user)
        for index, (ivs, fs) in enumerate(pieces):
            self._add_activity(at, session if index == 0 else None, ivs, window, fs)
        self.publisher.wake()

    def _add_activity(
        self,
        at: datetime,
        session: Session,
        intervals: list[wire.ActivityInterval],
        window: wire.WindowInfo | None,
        files: list[wire.FileChange],
    ) -> None:
        event_id = str(ULID())

        def build(seq: int) -> tuple[str, str, bytes]:
            payload = wire.Activity(
                event_id=event_id,
                agent=self.agent,
                seq=seq,
                at=at,
                user=self.user,
                session=session,
                intervals=intervals,
                window=window,
                files=files,
                epoch=self.outbox.epoch,
            )
            return event_id, self.topics.agent_activity(self.agent), wire.encode(payload)

        try:
            self.outbox.add(build)
            self.state.batches += 1
        except OutboxWriteFailed:
            pass  # the disk refused it: counted in the outbox's refusals, and the outbox logs the outage once
        except OutboxFull:
            log.error("outbox full: an activity batch was refused (is the hub acking?)")

    # --- commands ------------------------------------------------------------------------------------------------

    def _unlocked(self) -> None:
        with self._lock:
            self.state.locked_since = None

    def _commands_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                item = self._commands.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                if isinstance(item, str):
                    self.desktop.notify(item, window_timeout_s=60)
                else:
                    self.execute(item)
            except Exception:
                log.exception("command failed")

    def execute(self, command: wire.AgentCommand) -> None:
        """Carry out one supervisor command, visibly."""
        who = command.issued_by
        log.info("command %s from %s: %s", command.command_id, who, command.action)
        if command.action == "message":
            self.desktop.notify(f"Message from {who}: {command.text}")
        elif command.action == "lock":
            if not self.config.commands.allow_lock:
                self.desktop.notify(f"{who} asked to lock this screen; locking is switched off here")
                return
            after = f"; it unlocks in {command.unlock_after_s} s" if command.unlock_after_s else ""
            self.desktop.notify(f"{who} is locking this screen{after}", window_timeout_s=30)
            if self.desktop.lock(command.unlock_after_s):
                with self._lock:
                    self.state.locked_since = time.monotonic()
        elif command.action == "unlock":
            self.desktop.cancel_unlock()
            self.desktop.unlock()
            self._unlocked()
        elif command.action == "screenshot":
            self.desktop.notify(f"{who} took a full screenshot of this screen", window_timeout_s=30)
            self._screenshots.put(command)

    # --- MQTT thread ---------------------------------------------------------------------------------------------

    def _on_payload(self, payload: object) -> None:
        if isinstance(payload, wire.AgentCommand):
            age = (self._clock() - payload.at).total_seconds()
            if age > COMMAND_MAX_AGE_S:
                log.warning(
                    "command %s (%s from %s) is %.0f s old (queued while the agent was away): not carried out",
                    payload.command_id,
                    payload.action,
                    payload.issued_by,
                    age,
                )
                return
            self._commands.put(payload)

    def _problem(self, text: str) -> None:
        log.warning("%s", text)
        with self._lock:
            self.state.problems.append(text)
            self.notifier.status(f"agent {self.agent}: " + "; ".join(self.state.problems)[:400])
