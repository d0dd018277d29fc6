"""Live state pushed by the broker: presence, alerts, devices, events and workstations, kept for the TUI to draw.

One :class:`LiveState` owns an MQTT link (clean session: the TUI needs state, not a backlog), decodes every message
with the wire contract (a bad message is counted, never fatal) and keeps the latest state in plain dicts under a
lock. Each area has a version number that grows on every change, so the UI redraws only the areas that changed
and no faster than it wants to: messages are coalesced, not drawn one by one. No Textual in here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from edge.protocol import wire
from edge.protocol.config import MqttSettings
from edge.protocol.mqtt import MqttLink, Received
from tui.replies import parse_time

log = logging.getLogger("rollcall.tui.live")

Area = Literal["presence", "alerts", "devices", "events", "screens", "hub"]
AREAS: tuple[Area, ...] = ("presence", "alerts", "devices", "events", "screens", "hub")
EVENTS_KEPT = 500
RESOLVED_ALERTS_KEPT = 500
"""Resolved alerts kept for the Alerts view, the newest; open and acknowledged ones are all kept."""
BOARD_REST_RATIO = 3.0
"""After decoding a presence board, the decoder rests this many times as long as the decode took (at most
``BOARD_REST_MAX_S``) before the next: decoding takes at most a quarter of a core. During a rush the hub publishes a
board up to ten times a second, and validating one of 10,000 rows takes about 0.1 s, so decoding each would keep a
core busy; a newer board replaces one that waits. A small site's board (milliseconds) waits next to nothing."""
BOARD_REST_MAX_S = 0.25
"""The longest rest between two boards (nobody reads a board faster than four times a second)."""


class LatestBoard:
    """Decodes the newest presence board on its own thread, resting between decodes; newer boards replace older.

    MQTT's network thread only hands the board over (``offer``), so alerts, events and health are never stuck behind
    a large board; a board that arrives while another waits replaces it (the newest state is all the TUI shows).
    """

    def __init__(
        self,
        handle: Callable[[Received], None],
        rest_ratio: float = BOARD_REST_RATIO,
        rest_max_s: float = BOARD_REST_MAX_S,
    ) -> None:
        self._handle = handle
        self.rest_ratio = rest_ratio
        self.rest_max_s = rest_max_s
        self._waiting: Received | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.replaced = 0
        """Boards dropped unread because a newer one came first."""

    def start(self) -> None:
        """Start the decoding thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="tui-board-decoder", daemon=True)
            self._thread.start()

    def offer(self, message: Received) -> None:
        """Queue ``message`` for decoding, in place of any board still waiting."""
        with self._lock:
            if self._waiting is not None:
                self.replaced += 1
            self._waiting = message
        self._wake.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Decode what waits, then end the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _take(self) -> Received | None:
        with self._lock:
            message, self._waiting = self._waiting, None
            return message

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            message = self._take()
            if message is not None:
                started = time.monotonic()
                try:
                    self._handle(message)
                except Exception:
                    log.exception("could not apply a presence board")
                took = time.monotonic() - started
                if not self._stop.is_set():
                    self._stop.wait(min(self.rest_max_s, self.rest_ratio * took))
            if self._stop.is_set() and self._waiting is None:
                return


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What the TUI knows about one door device."""

    device: str
    status: str = "unknown"
    last_seen: datetime | None = None
    fps: float | None = None
    outbox_depth: int | None = None
    oldest_unacked_s: float | None = None
    gallery_version: int | None = None
    temperature_c: float | None = None


@dataclass(frozen=True, slots=True)
class WorkstationState:
    """What the TUI knows about one workstation (its screen agent); ``version`` grows with every change of it."""

    agent: str
    status: str = "unknown"
    activity: str | None = None
    window: str | None = None
    user: str | None = None
    thumbnail: wire.Screen | None = None
    thumbnail_at: datetime | None = None
    version: int = 0


VITAL_SIGNS: tuple[str, ...] = ("fps", "outbox_depth", "oldest_unacked_s", "gallery_version", "temperature_c")
"""The fields of a device's health (:class:`edge.protocol.wire.Health`) that :class:`DeviceState` keeps."""


def _vital_signs(health: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`VITAL_SIGNS` of a health message or of the hub's devices table (None where missing)."""
    return {name: health.get(name) for name in VITAL_SIGNS}


def _window_text(window: wire.WindowInfo | None) -> str | None:
    if window is None or (window.title is None and window.app is None):
        return None
    if window.title and window.app:
        return f"{window.title} ({window.app})"
    return window.title or window.app


class LiveState:
    """The TUI's live picture of the site, fed by the broker (or by :meth:`apply` in tests)."""

    def __init__(
        self,
        settings: MqttSettings | None,
        topics: wire.Topics,
        client_id: str,
        *,
        clock: Callable[[], datetime] = wire.now_utc,
        events_kept: int = EVENTS_KEPT,
        on_change: Callable[[Area], None] | None = None,
    ) -> None:
        self.topics = topics
        self.client_id = client_id
        self._clock = clock
        self._lock = threading.Lock()
        self._versions: dict[str, int] = dict.fromkeys(AREAS, 0)
        self._presence: dict[str, wire.PresenceEntry] = {}
        self._presence_at: datetime | None = None
        self._alerts: dict[str, wire.Alert] = {}
        self._devices: dict[str, DeviceState] = {}
        self._workstations: dict[str, WorkstationState] = {}
        self._events: deque[wire.Event] = deque(maxlen=events_kept)
        self._hub_status: wire.Status | None = None
        self._on_change = on_change
        self.events_seen = 0
        """Events received since start (the ring buffer keeps only the last ``events_kept``)."""
        self.bad_messages = 0
        """Messages that broke the wire contract; counted and otherwise ignored."""
        self.last_bad: str | None = None
        self.presence_refused = False
        """Set when a presence board could not be decoded (too large, say): the UI should ask the hub instead."""
        self.connected = False
        self._connection_listeners: list[Callable[[bool], None]] = []
        self.link: MqttLink | None = None
        self.boards = LatestBoard(self.handle_message)
        """Presence boards from the broker are decoded here, the newest only (see :data:`BOARD_DECODE_EVERY_S`)."""
        if settings is not None:
            self.link = MqttLink(
                settings,
                client_id=client_id,
                on_message=self.receive,
                on_connection_change=self.handle_connection,
                clean_session=True,
            )
            for topic_filter in self.subscriptions():
                self.link.subscribe(topic_filter, qos=1)

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        """Every topic filter the TUI listens to."""
        t = self.topics
        return [
            t.hub_presence(),
            t.hub_alert(),
            t.hub_status(),
            t.all_devices("status"),
            t.all_devices("health"),
            t.all_devices("event"),
            t.all_agents("status"),
            t.all_agents("thumbnail"),
            t.all_agents("activity"),
        ]

    def start(self) -> None:
        """Start connecting in the background (returns at once, also when the broker is down)."""
        if self.link is not None:
            self.boards.start()
            self.link.start()

    def stop(self) -> None:
        """Disconnect."""
        if self.link is not None:
            self.link.stop()
            self.boards.stop()

    def on_connection_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(connected)`` whenever the broker connection goes up or down (on the network thread)."""
        self._connection_listeners.append(listener)

    def handle_connection(self, up: bool) -> None:
        """The link's connection changed."""
        self.connected = up
        self._bump("hub")
        for listener in list(self._connection_listeners):
            try:
                listener(up)
            except Exception:
                log.exception("connection listener failed")

    def publish(self, topic: str, payload: wire.PayloadBase, qos: int = 1) -> None:
        """Publish on the live link (agent commands, which the hub's API does not carry)."""
        if self.link is None:
            raise RuntimeError("this LiveState has no broker link")
        self.link.publish(topic, payload, qos=qos)

    def send_agent_command(self, agent: str, command: wire.AgentCommand) -> None:
        """Send a command (message, lock, ...) straight to a workstation agent."""
        self.publish(self.topics.agent_command(agent), command, qos=1)

    # --- input -------------------------------------------------------------------------------------------------

    def receive(self, message: Received) -> None:
        """From the broker: presence boards go to :attr:`boards` (the newest is decoded), the rest are applied now."""
        if message.topic == self.topics.hub_presence():
            self.boards.offer(message)
        else:
            self.handle_message(message)

    def handle_message(self, message: Received) -> None:
        """Decode one message and apply it; a message that breaks the contract is counted and dropped."""
        try:
            ref, payload = wire.decode(message.topic, message.payload)
        except wire.WireError as exc:
            with self._lock:
                self.bad_messages += 1
                self.last_bad = str(exc)[:300]
                if message.topic == self.topics.hub_presence():
                    self.presence_refused = True
            self._bump("hub")
            return
        self.apply(ref, payload)

    def apply(self, ref: wire.TopicRef, payload: wire.PayloadBase) -> None:
        """Apply one decoded payload to the state."""
        changed: Area | None = None
        with self._lock:
            if ref.role == "hub":
                if isinstance(payload, wire.Presence):
                    self._presence = {entry.person_id: entry for entry in payload.people}
                    self._presence_at = payload.at
                    self.presence_refused = False
                    changed = "presence"
                elif isinstance(payload, wire.Alert):
                    self._alerts[payload.alert_id] = payload
                    self._forget_resolved_alerts()
                    changed = "alerts"
                elif isinstance(payload, wire.Status):
                    self._hub_status = payload
                    changed = "hub"
            elif ref.role == "device" and ref.entity is not None:
                changed = self._apply_device(ref.entity, payload)
            elif ref.role == "agent" and ref.entity is not None:
                changed = self._apply_workstation(ref.entity, payload)
            if changed is not None:
                self._versions[changed] += 1
        if changed is not None and self._on_change is not None:
            self._on_change(changed)

    def _apply_device(self, device: str, payload: wire.PayloadBase) -> Area | None:
        current = self._devices.get(device) or DeviceState(device)
        if isinstance(payload, wire.Status):
            self._devices[device] = replace(current, status=payload.state, last_seen=payload.at or current.last_seen)
            return "devices"
        if isinstance(payload, wire.Health):
            self._devices[device] = replace(
                current,
                status="online" if current.status in ("unknown", "offline") else current.status,
                last_seen=payload.at,
                **_vital_signs(payload.model_dump()),
            )
            return "devices"
        if isinstance(payload, wire.Event):
            self._events.append(payload)
            self.events_seen += 1
            return "events"
        return None

    def _apply_workstation(self, agent: str, payload: wire.PayloadBase) -> Area | None:
        current = self._workstations.get(agent) or WorkstationState(agent)
        if isinstance(payload, wire.Status):
            updated = replace(current, status=payload.state)
        elif isinstance(payload, wire.Screen):
            if payload.full:
                return None
            updated = replace(current, thumbnail=payload, thumbnail_at=payload.at)
            if current.status == "unknown":
                updated = replace(updated, status="online")
        elif isinstance(payload, wire.Activity):
            state = payload.intervals[-1].state if payload.intervals else current.activity
            window = _window_text(payload.window) if payload.window is not None else current.window
            updated = replace(current, activity=state, window=window, user=payload.user or current.user)
        else:
            return None
        self._workstations[agent] = replace(updated, version=current.version + 1)
        return "screens"

    def set_presence(self, entries: list[dict[str, Any]], at: datetime | None = None) -> None:
        """Replace the board with ``presence.get``'s answer (when the retained board could not be decoded)."""
        board = [wire.PresenceEntry.model_validate(entry, strict=False) for entry in entries]
        self.apply(
            wire.TopicRef(self.topics.prefix, self.topics.site, "hub", None, "presence"),
            wire.Presence(at=at or self._clock(), people=board),
        )

    def merge_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Merge ``alerts.list``'s answer (alerts are not retained: a newcomer asks the hub for the open ones)."""
        decoded = []
        for raw in alerts:
            try:
                decoded.append(wire.Alert.model_validate({"v": wire.WIRE_VERSION, **raw}, strict=False))
            except ValueError:
                self.bad_messages += 1
        with self._lock:
            for alert in decoded:
                self._alerts[alert.alert_id] = alert
            self._forget_resolved_alerts()
            self._versions["alerts"] += 1

    def _forget_resolved_alerts(self) -> None:
        """Keep the newest RESOLVED_ALERTS_KEPT resolved alerts (the caller holds the lock).

        A console open for weeks would otherwise keep every alert the site ever had.
        """
        resolved = [a for a in self._alerts.values() if a.state == "resolved"]
        if len(resolved) <= RESOLVED_ALERTS_KEPT:
            return
        resolved.sort(key=lambda a: a.last_at, reverse=True)
        for alert in resolved[RESOLVED_ALERTS_KEPT:]:
            del self._alerts[alert.alert_id]

    def merge_devices(self, devices: list[dict[str, Any]]) -> None:
        """Merge ``devices.list``'s answer: devices known to the hub that have not spoken since the TUI started."""
        with self._lock:
            for row in devices:
                device = str(row.get("device"))
                health = row.get("health") if isinstance(row.get("health"), dict) else {}
                assert isinstance(health, dict)
                known = self._devices.get(device)
                if known is not None and known.last_seen is not None:
                    continue  # what the broker told us is newer than the hub's table
                vital_signs = _vital_signs(health)
                vital_signs["gallery_version"] = row.get("gallery_version") or health.get("gallery_version")
                self._devices[device] = DeviceState(
                    device=device,
                    status=str(row.get("status") or "unknown"),
                    last_seen=parse_time(row.get("last_seen")),
                    **vital_signs,
                )
            self._versions["devices"] += 1

    def _bump(self, area: Area) -> None:
        with self._lock:
            self._versions[area] += 1

    # --- reading (copies, so the UI never holds the lock while drawing) -----------------------------------------

    def version(self, area: Area) -> int:
        """The area's change counter."""
        with self._lock:
            return self._versions[area]

    def versions(self) -> dict[str, int]:
        """Every area's change counter."""
        with self._lock:
            return dict(self._versions)

    def presence(self) -> list[wire.PresenceEntry]:
        """The presence board, one entry per person."""
        with self._lock:
            return list(self._presence.values())

    def alerts(self) -> list[wire.Alert]:
        """Every alert seen, open ones first, newest first within a state."""
        order = {"open": 0, "acknowledged": 1, "resolved": 2}
        with self._lock:
            alerts = list(self._alerts.values())
        alerts.sort(key=lambda a: a.last_at, reverse=True)
        alerts.sort(key=lambda a: order[a.state])
        return alerts

    def alert(self, alert_id: str) -> wire.Alert | None:
        """One alert by id."""
        with self._lock:
            return self._alerts.get(alert_id)

    def devices(self) -> list[DeviceState]:
        """Every device, by id."""
        with self._lock:
            return sorted(self._devices.values(), key=lambda d: d.device)

    def workstations(self) -> list[WorkstationState]:
        """Every workstation, by agent id."""
        with self._lock:
            return sorted(self._workstations.values(), key=lambda a: a.agent)

    def workstation(self, agent: str) -> WorkstationState | None:
        """One workstation by agent id."""
        with self._lock:
            return self._workstations.get(agent)

    def events(self, limit: int | None = None) -> list[wire.Event]:
        """The most recent events, oldest first."""
        with self._lock:
            events = list(self._events)
        return events[-limit:] if limit else events

    def hub_status(self) -> wire.Status | None:
        """The hub's retained status, if one arrived."""
        with self._lock:
            return self._hub_status

    def counts(self) -> tuple[int, int, int]:
        """People in, people out, open alerts."""
        with self._lock:
            people = list(self._presence.values())
            open_alerts = sum(1 for a in self._alerts.values() if a.state == "open")
        inside = sum(1 for p in people if p.state == "in")
        return inside, len(people) - inside, open_alerts
