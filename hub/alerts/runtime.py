"""Alerts in the running hub: versioned rules from the config, the alert book, publishing and notifications.

Runs on the hub's writer thread (the store's one user). Notifier threads and the Telegram bot only hand conditions
and questions over through thread-safe queues and in-memory snapshots; they never touch the store.
"""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edge.protocol import wire
from hub.config import HubConfig
from hub.notify import (
    Notification,
    NotificationQueue,
    Notifier,
    TelegramBot,
    TelegramNotifier,
    WebhookNotifier,
)
from hub.rules import (
    AlertBook,
    AlertChange,
    AlertRecord,
    AlertRules,
    Condition,
    DeviceFacts,
    PersonFacts,
    WorkstationFacts,
    door_event,
    evaluate_event,
    evaluate_state,
)
from hub.schedule import RuleHistory, RuleSet, parse_schedule

if TYPE_CHECKING:
    from hub.service import HubService

log = logging.getLogger("rollcall.hub.alerts")

STATE_EVERY_S = 10.0
KEEP_RESOLVED = timedelta(days=30)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def ruleset_from_config(config: HubConfig, version: int, valid_from: datetime) -> RuleSet:
    """The rules the config asks for, as one version."""
    schedule = config.schedule
    data: dict[str, object] = {
        "timezone": config.site.timezone,
        "mode": schedule.mode,
        "paused_until": schedule.paused_until.isoformat() if schedule.paused_until else None,
        "holidays": [day.isoformat() for day in schedule.holidays],
        **{day: list(getattr(schedule, day)) for day in WEEKDAYS},
    }
    return RuleSet(version, valid_from, parse_schedule(data), AlertRules.from_dict(config.alerts))


def _mode(value: str) -> Literal["automatic", "on", "off"]:
    return "on" if value == "on" else "off" if value == "off" else "automatic"


def _device_status(value: str | None) -> Literal["online", "offline", "stopped"] | None:
    return (
        "online"
        if value == "online"
        else "offline"
        if value == "offline"
        else "stopped"
        if value == "stopped"
        else None
    )


def _read_secret(path: Path | None, what: str) -> str:
    if path is None:
        raise ValueError(f"{what} is enabled but its secret file is not set")
    try:
        return path.read_text().splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc}") from None


class Alerting:
    """Owns the rule history, the alert book and the notification queue of one hub."""

    def __init__(self, hub: HubService, now: datetime) -> None:
        self.hub = hub
        store = hub.store
        raw_history = store.get_meta("rule_history")
        self.history = RuleHistory.from_dict(json.loads(raw_history)) if raw_history else RuleHistory()
        wanted = self._with_override(ruleset_from_config(hub.config, 1, now))
        latest = self.history.latest if self.history.versions else None
        if latest is None or (latest.schedule, latest.rules) != (wanted.schedule, wanted.rules):
            # The config changed: a new version from now on; events that happened earlier keep their old rules.
            version = latest.version + 1 if latest else 1
            self.history.add(self._with_override(ruleset_from_config(hub.config, version, now)))
            store.set_meta("rule_history", json.dumps(self.history.to_dict()))
        raw_book = store.get_meta("alert_book")
        self.book = AlertBook.from_dict(json.loads(raw_book)) if raw_book else AlertBook()
        self._external: queue.SimpleQueue[Condition] = queue.SimpleQueue()
        self._last_state = float("-inf")
        self.notifiers: list[Notifier] = self._notifiers()
        self.queue = NotificationQueue(
            self.notifiers, on_failing=self._notifier_failing, on_recovered=self._notifier_recovered
        )
        self.bot: TelegramBot | None = None
        self._who_text = "nobody known yet"
        self._status_text = "starting"

    # --- manual override and pause --------------------------------------------------------------------------------

    def _override(self) -> dict[str, str | None]:
        raw = self.hub.store.get_meta("schedule_override")
        return json.loads(raw) if raw else {}

    def _with_override(self, ruleset: RuleSet) -> RuleSet:
        """The config's rules with the supervisor's standing override (mode, pause) applied: it survives restarts."""
        override = self._override()
        if not override:
            return ruleset
        paused = override.get("paused_until")
        schedule = replace(
            ruleset.schedule,
            mode=_mode(override.get("mode") or ruleset.schedule.mode),
            paused_until=datetime.fromisoformat(paused) if paused else ruleset.schedule.paused_until,
        )
        return replace(ruleset, schedule=schedule)

    def set_mode(self, mode: str, paused_until: datetime | None, by: str, now: datetime) -> RuleSet:
        """A manual override (``on``/``off``), back to ``automatic``, and/or a pause: a new rule version from now."""
        if mode not in ("automatic", "on", "off"):
            raise ValueError("mode must be automatic, on or off")
        if paused_until is not None and paused_until <= now:
            raise ValueError("paused_until must be in the future")
        override = {"mode": mode, "paused_until": paused_until.isoformat() if paused_until else None}
        self.hub.store.set_meta("schedule_override", json.dumps(override))
        latest = self.history.latest
        schedule = replace(latest.schedule, mode=_mode(mode), paused_until=paused_until)
        # Versions must start strictly later than the one before; a change in the same instant starts just after it.
        valid_from = max(now, latest.valid_from + timedelta(microseconds=1))
        ruleset = RuleSet(latest.version + 1, valid_from, schedule, latest.rules)
        self.history.add(ruleset)
        self.hub.store.set_meta("rule_history", json.dumps(self.history.to_dict()))
        self.hub.store.audit(by, "schedule.set_mode", "schedule", override, now)
        return ruleset

    # --- notifiers ---------------------------------------------------------------------------------------------------

    def _notifiers(self) -> list[Notifier]:
        notify = self.hub.config.notify
        found: list[Notifier] = []
        if notify.telegram.enabled:
            token = _read_secret(notify.telegram.token_file, "notify.telegram")
            found.append(
                TelegramNotifier(
                    token,
                    notify.telegram.chat_ids,
                    base_url=notify.telegram.base_url,
                    rules=tuple(notify.telegram.rules) if notify.telegram.rules else None,
                    min_severity=notify.telegram.min_severity,
                )
            )
        if notify.webhook.enabled:
            secret = _read_secret(notify.webhook.secret_file, "notify.webhook")
            found.append(
                WebhookNotifier(
                    notify.webhook.url,
                    secret.encode(),
                    rules=tuple(notify.webhook.rules) if notify.webhook.rules else None,
                    min_severity=notify.webhook.min_severity,
                )
            )
        return found

    def start(self) -> None:
        """Start delivery threads and the Telegram bot."""
        self.queue.start()
        telegram = self.hub.config.notify.telegram
        if telegram.enabled:
            self.bot = TelegramBot(
                _read_secret(telegram.token_file, "notify.telegram"),
                telegram.chat_ids,
                status=lambda: self._status_text,
                who=lambda: self._who_text,
                attendance=self._attendance_answer,
                base_url=telegram.base_url,
            )
            self.bot.start()

    def stop(self) -> None:
        """Stop the bot and deliver what is queued (briefly)."""
        if self.bot is not None:
            self.bot.stop(5)
        self.queue.stop(5)

    def _notifier_failing(self, name: str, error: Exception) -> None:
        self._external.put(
            Condition(
                "notifier_failing",
                ("notifier_failing", name),
                "critical",
                f"notifier {name}",
                f"notifications through {name} keep failing: {error}",
                wire.now_utc(),
            )
        )

    def _notifier_recovered(self, name: str) -> None:
        self._external.put(
            Condition(
                "notifier_failing",
                ("notifier_failing", name),
                "critical",
                f"notifier {name}",
                f"{name} delivers again",
                wire.now_utc(),
                active=False,
            )
        )

    def _attendance_answer(self, day: date | None) -> tuple[str, Sequence[tuple[str, bytes]]]:
        """The day's attendance with first-in photos, for the Telegram bot.

        Runs on the bot's thread, so it opens a store of its own (WAL: readers never block the writer).
        """
        from hub.store import HubStore

        day = day or wire.now_utc().date()
        with HubStore.from_settings(self.hub.config.hub) as store:
            names = {p.id: p.name or p.id for p in store.list_people()}
            rows = store.attendance(day)
            photos: list[tuple[str, bytes]] = []
            lines = [f"Attendance {day.isoformat()}:"] if rows else [f"No attendance on {day.isoformat()}."]
            for row in rows:
                first_in = row.first_in.strftime("%H:%M") if row.first_in else "-"
                last_out = row.last_out.strftime("%H:%M") if row.last_out else "-"
                name = names.get(row.person_id, row.person_id)
                lines.append(f"{name}: in {first_in} UTC, out {last_out} UTC, {row.present_s / 3600:.1f} h")
                photo = store.load_snapshot(row.first_in_event) if row.first_in_event and len(photos) < 10 else None
                if photo:
                    photos.append((f"{name}, first in {first_in} UTC", photo))
        return "\n".join(lines), photos

    # --- evaluation (writer thread) ----------------------------------------------------------------------------------

    def on_events(self, events: list[tuple[wire.Event, str]], now: datetime) -> None:
        """Judge newly stored events by the rules in force when each happened."""
        conditions: list[Condition] = []
        for event, role in events:
            if event.type != "seen":
                continue
            conditions += evaluate_event(
                door_event(event, "entrance" if role == "entrance" else "exit" if role == "exit" else "both"),
                self.history,
                now,
            )
        if conditions:
            self._apply(conditions, now)

    def tick(self, now: datetime, force: bool = False) -> None:
        """Periodic: device, people and notifier conditions; expired unknown-face episodes; snapshots for the bot."""
        with self.hub.store_lock:
            self._tick(now, force)

    def _tick(self, now: datetime, force: bool) -> None:
        import time

        conditions: list[Condition] = []
        while True:
            try:
                conditions.append(self._external.get_nowait())
            except queue.Empty:
                break
        if force or time.monotonic() - self._last_state >= STATE_EVERY_S:
            self._last_state = time.monotonic()
            conditions += evaluate_state(
                self._device_facts(now),
                self._person_facts(now),
                self._workstation_facts(),
                self.history,
                now,
                expected=frozenset(self.hub.config.schedule.expected),
            )
            self._refresh_bot_texts(now)
        self._apply(conditions, now)
        if self.book.prune(now - KEEP_RESOLVED):
            self._save()

    def _device_facts(self, now: datetime) -> list[DeviceFacts]:
        facts = []
        for device in self.hub.store.list_devices():
            health = device.health or {}
            facts.append(
                DeviceFacts(
                    device.id,
                    status=_device_status(device.status),
                    status_at=device.status_at,
                    outbox_depth=health.get("outbox_depth"),
                    oldest_unacked_s=health.get("oldest_unacked_s"),
                    temperature_c=health.get("temperature_c"),
                    disk_free_mb=health.get("disk_free_mb"),
                    at=device.last_seen,
                )
            )
        return facts

    def _workstation_facts(self) -> list[WorkstationFacts]:
        facts = []
        for agent in self.hub.store.list_agents():
            idle_since = None
            if agent.get("state") == "idle" and agent.get("state_since"):
                idle_since = datetime.fromisoformat(str(agent["state_since"]))
            facts.append(WorkstationFacts(str(agent["id"]), idle_since, agent.get("user")))
        return facts

    def _person_facts(self, now: datetime) -> list[PersonFacts]:
        from hub.attendance import local_day

        today = local_day(now, self.hub.attendance_rules)
        arrived = {row.person_id for row in self.hub.store.attendance(today) if row.first_in is not None}
        names = {p.id: p.name for p in self.hub.store.list_people()}
        facts = []
        for person_id, name in names.items():
            state = self.hub.presence_state(person_id)
            facts.append(
                PersonFacts(
                    person_id,
                    state.state if state else "unknown",
                    state.since if state else None,
                    person_id in arrived,
                    name=name,
                )
            )
        return facts

    def _refresh_bot_texts(self, now: datetime) -> None:
        board = self.hub.presence_payload(now)
        inside = [entry.name for entry in board.people if entry.state == "in"]
        self._who_text = f"In now ({len(inside)}): " + (", ".join(inside) if inside else "nobody")
        devices = self.hub.store.list_devices()
        online = sum(1 for d in devices if d.status == "online")
        self._status_text = (
            f"rollcall hub {self.hub.config.hub.id}: {len(inside)} in, {online}/{len(devices)} devices online, "
            f"{len(self.book.open_alerts())} open alerts"
        )

    def _apply(self, conditions: list[Condition], now: datetime) -> None:
        changes = self.book.apply(conditions, now)
        for change in changes:
            self._publish(change, now)
        if changes:
            self._save()

    def _save(self) -> None:
        self.hub.store.set_meta("alert_book", json.dumps(self.book.to_dict()))

    def _publish(self, change: AlertChange, now: datetime) -> None:
        alert = AlertBook.to_wire(change.alert)
        self.hub.link.publish(self.hub.topics.hub_alert(), alert, qos=1)
        if change.kind == "opened":
            self.queue.submit(Notification.for_alert(alert))

    # --- API ---------------------------------------------------------------------------------------------------------

    def list(self, state: str | None = None) -> list[AlertRecord]:
        """Alerts, open first, newest first within each state."""
        records = [a for a in self.book.alerts() if state is None or a.state == state]
        order = {"open": 0, "acknowledged": 1, "resolved": 2}
        return sorted(records, key=lambda a: (order.get(a.state, 3), -a.last_at.timestamp()))

    def acknowledge(self, alert_id: str, by: str, now: datetime) -> AlertRecord:
        """Acknowledge (raises KeyError for an unknown id, ValueError for a resolved one)."""
        change = self.book.acknowledge(alert_id, by, now)
        if change is not None:
            self._publish(change, now)
            self._save()
        return self.book.get(alert_id)

    def resolve(self, alert_id: str, by: str, now: datetime) -> AlertRecord:
        """Resolve by hand."""
        change = self.book.resolve(alert_id, by, now)
        if change is not None:
            self._publish(change, now)
            self._save()
        return self.book.get(alert_id)
