"""Alerts in the running hub: versioned rules from the config, the alert book, publishing and notifications.

Runs on the hub's writer thread (the store's one user). Notifier threads and the Telegram bot only hand conditions
and questions over through thread-safe queues and in-memory snapshots; they never touch the store.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from edge.protocol import wire
from edge.protocol.times import WEEKDAYS
from hub.alert_settings import AlertRules
from hub.alerts.book import AlertBook, AlertChange, AlertRecord
from hub.alerts.history import RuleHistory, RuleSet
from hub.alerts.morning import ForgottenCheckout, due_days, report, report_time
from hub.alerts.rules import (
    Condition,
    DeviceFacts,
    PersonFacts,
    WorkstationFacts,
    door_event,
    evaluate_event,
    evaluate_state,
)
from hub.alerts.schedule import is_paused, is_work_time, parse_schedule
from hub.config import HubConfig
from hub.domain.attendance import AttendanceRules
from hub.notify import (
    Notification,
    NotificationChannel,
    NotificationQueue,
    TelegramBot,
    TelegramNotifier,
    WebhookNotifier,
)

log = logging.getLogger("rollcall.hub.alerts")

STATE_EVERY_S = 10.0
KEEP_RESOLVED = timedelta(days=30)
MORNING_REPORTED = "forgotten_checkout_reported"
"""Meta key: the last attendance day the morning report of forgotten check-outs covered (ISO date; '' = none)."""


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


def _read_secret(path: Path | None, what: str) -> str:
    if path is None:
        raise ValueError(f"{what} is enabled but its secret file is not set")
    try:
        return path.read_text().splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc}") from None


class AlertJournal(Protocol):
    """Where alerting keeps its rule history, alert book and override (meta values), and audits changes."""

    def get_meta(self, key: str) -> str | None:
        """A stored value; None when unset."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Store a value."""
        ...

    def audit(
        self, actor: str, action: str, subject: str | None, details: Mapping[str, object] | None, now: datetime
    ) -> int:
        """Append an audit row; returns its id."""
        ...


class AlertFacts(Protocol):
    """What alerting asks the rest of the hub: the facts the state rules judge, and the Telegram bot's answers."""

    def devices(self, now: datetime) -> list[DeviceFacts]:
        """Every door device's status and health."""
        ...

    def people(self, now: datetime) -> list[PersonFacts]:
        """Every person's presence and arrival today."""
        ...

    def workstations(self) -> list[WorkstationFacts]:
        """Every workstation agent's idleness."""
        ...

    def inside(self, now: datetime) -> list[str]:
        """The names of the people in now."""
        ...

    def devices_online(self) -> tuple[int, int]:
        """(devices online, devices known)."""
        ...

    def attendance_answer(self, day: date | None) -> tuple[str, Sequence[tuple[str, bytes]]]:
        """The answer to the bot's ``/attendance`` (runs on the bot's thread)."""
        ...

    def attendance_rules(self) -> AttendanceRules:
        """How the site's attendance days run (time zone, day start)."""
        ...

    def forgotten_checkouts(self, day: date, now: datetime) -> list[ForgottenCheckout]:
        """Who forgot to check out on a past attendance day, once the sign-off sweep has computed it."""
        ...


class Alerting:
    """Owns the rule history, the alert book and the notification queue of one hub.

    ``journal`` keeps its state (the hub's store, used under ``store_lock``), ``facts`` tells it about the site, and
    ``publish_alert`` puts every alert change on the hub's alert topic.
    """

    def __init__(
        self,
        config: HubConfig,
        journal: AlertJournal,
        store_lock: threading.RLock,
        facts: AlertFacts,
        publish_alert: Callable[[wire.Alert], object],
        now: datetime,
    ) -> None:
        self.config = config
        self.journal = journal
        self.store_lock = store_lock
        self.facts = facts
        self.publish_alert = publish_alert
        raw_history = journal.get_meta("rule_history")
        self.history = RuleHistory.from_dict(json.loads(raw_history)) if raw_history else RuleHistory()
        wanted = self._with_override(ruleset_from_config(config, 1, now))
        latest = self.history.latest if self.history.versions else None
        if latest is None or (latest.schedule, latest.rules) != (wanted.schedule, wanted.rules):
            # The config changed: a new version from now on; events that happened earlier keep their old rules.
            version = latest.version + 1 if latest else 1
            self.history.add(self._with_override(ruleset_from_config(config, version, now)))
            journal.set_meta("rule_history", json.dumps(self.history.to_dict()))
        raw_book = journal.get_meta("alert_book")
        self.book = AlertBook.from_dict(json.loads(raw_book)) if raw_book else AlertBook()
        self._external: queue.SimpleQueue[Condition] = queue.SimpleQueue()
        self._last_state = float("-inf")
        self.channels: list[NotificationChannel] = self._channels()
        self.queue = NotificationQueue(
            self.channels, on_failing=self._notifier_failing, on_recovered=self._notifier_recovered
        )
        self.bot: TelegramBot | None = None
        self._who_text = "nobody known yet"
        self._status_text = "starting"

    # --- manual override and pause --------------------------------------------------------------------------------

    def _override(self) -> dict[str, str | None]:
        raw = self.journal.get_meta("schedule_override")
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
        self.journal.set_meta("schedule_override", json.dumps(override))
        latest = self.history.latest
        schedule = replace(latest.schedule, mode=_mode(mode), paused_until=paused_until)
        # Versions must start strictly later than the one before; a change in the same instant starts just after it.
        valid_from = max(now, latest.valid_from + timedelta(microseconds=1))
        ruleset = RuleSet(latest.version + 1, valid_from, schedule, latest.rules)
        self.history.add(ruleset)
        self.journal.set_meta("rule_history", json.dumps(self.history.to_dict()))
        self.journal.audit(by, "schedule.set_mode", "schedule", override, now)
        return ruleset

    # --- notifiers ---------------------------------------------------------------------------------------------------

    def _channels(self) -> list[NotificationChannel]:
        notify = self.config.notify
        found: list[NotificationChannel] = []
        if notify.telegram.enabled:
            token = _read_secret(notify.telegram.token_file, "notify.telegram")
            found.append(
                TelegramNotifier(
                    token,
                    notify.telegram.chat_ids,
                    base_url=notify.telegram.base_url,
                    rules=tuple(notify.telegram.rules) if notify.telegram.rules else None,
                    min_severity=notify.telegram.min_severity,
                    zone=ZoneInfo(self.config.site.timezone),
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
                    zone=ZoneInfo(self.config.site.timezone),
                )
            )
        return found

    def start(self) -> None:
        """Start delivery threads and the Telegram bot."""
        self.queue.start()
        telegram = self.config.notify.telegram
        if telegram.enabled:
            self.bot = TelegramBot(
                _read_secret(telegram.token_file, "notify.telegram"),
                telegram.chat_ids,
                status=lambda: self._status_text,
                who=lambda: self._who_text,
                attendance=self.facts.attendance_answer,
                base_url=telegram.base_url,
            )
            self.bot.start()

    def stop(self) -> None:
        """Stop the bot and deliver what is queued (briefly)."""
        if self.bot is not None:
            self.bot.stop(5)
        self.queue.stop(5)

    def _notifier_failing(self, name: str, error: Exception) -> None:
        self._notifier_condition(name, f"notifications through {name} keep failing: {error}", active=True)

    def _notifier_recovered(self, name: str) -> None:
        self._notifier_condition(name, f"{name} delivers again", active=False)

    def _notifier_condition(self, name: str, message: str, *, active: bool) -> None:
        # One key per notifier for both, so its recovery clears the alert its failing opened.
        self._external.put(
            Condition(
                "notifier_failing",
                ("notifier_failing", name),
                "critical",
                f"notifier {name}",
                message,
                wire.now_utc(),
                active=active,
            )
        )

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
        with self.store_lock:
            self._tick(now, force)

    def _tick(self, now: datetime, force: bool) -> None:
        conditions: list[Condition] = []
        while True:
            try:
                conditions.append(self._external.get_nowait())
            except queue.Empty:
                break
        if force or time.monotonic() - self._last_state >= STATE_EVERY_S:
            self._last_state = time.monotonic()
            conditions += evaluate_state(
                self.facts.devices(now),
                self.facts.people(now),
                self.facts.workstations(),
                self.history,
                now,
                expected=frozenset(self.config.schedule.expected),
            )
            self._refresh_bot_texts(now)
        reported, morning = self._morning_report(now)
        self._apply(conditions + morning, now)
        if reported is not None:  # after the alerts are saved: a restart neither repeats nor loses a report
            self.journal.set_meta(MORNING_REPORTED, reported.isoformat())
        if self.book.prune(now - KEEP_RESOLVED):
            self._save()

    def _morning_report(self, now: datetime) -> tuple[date | None, list[Condition]]:
        """The reports of forgotten check-outs owed at ``now``, and the last day they cover (None: none owed).

        Held back (not marked done) while the rule may not fire: a pause, or outside work time with
        ``only_during_work``; a disabled rule forgets what it reported, so enabling it reports only the day before.
        """
        ruleset = self.history.in_force(now)
        rule = ruleset.rules.forgotten_checkout
        raw = self.journal.get_meta(MORNING_REPORTED)
        if not rule.enabled:
            if raw:
                self.journal.set_meta(MORNING_REPORTED, "")
            return None, []
        days = due_days(now, date.fromisoformat(raw) if raw else None, report_time(rule), self.facts.attendance_rules())
        schedule = ruleset.schedule
        if not days or is_paused(schedule, now) or (rule.only_during_work and not is_work_time(schedule, now)):
            return None, []
        rules = self.facts.attendance_rules()
        found = [report(day, self.facts.forgotten_checkouts(day, now), rule, rules, now) for day in days]
        return days[-1], [condition for condition in found if condition is not None]

    def _refresh_bot_texts(self, now: datetime) -> None:
        inside = self.facts.inside(now)
        self._who_text = f"In now ({len(inside)}): " + (", ".join(inside) if inside else "nobody")
        online, devices = self.facts.devices_online()
        self._status_text = (
            f"rollcall hub {self.config.hub.id}: {len(inside)} in, {online}/{devices} devices online, "
            f"{len(self.book.open_alerts())} open alerts"
        )

    def _apply(self, conditions: list[Condition], now: datetime) -> None:
        self._commit(self.book.apply(conditions, now), now)

    def _commit(self, changes: Sequence[AlertChange], now: datetime) -> None:
        for change in changes:
            self._publish(change, now)
        if changes:
            self._save()

    def _by_hand(
        self, action: Callable[[str, str, datetime], AlertChange | None], alert_id: str, by: str, now: datetime
    ) -> AlertRecord:
        change = action(alert_id, by, now)
        self._commit([change] if change is not None else [], now)
        return self.book.get(alert_id)

    def _save(self) -> None:
        self.journal.set_meta("alert_book", json.dumps(self.book.to_dict()))

    def _publish(self, change: AlertChange, now: datetime) -> None:
        alert = AlertBook.to_wire(change.alert)
        self.publish_alert(alert)
        if change.kind == "opened":
            self.queue.submit(Notification.for_alert(alert))

    # --- erasure -----------------------------------------------------------------------------------------------------

    def forget_person(self, person_id: str, name: str | None, now: datetime) -> int:
        """After an erasure: alerts about or naming the person leave the book, and queued notifications go.

        Every dropped alert is published once more, resolved, with its subject and message replaced, so a TUI that
        holds it replaces its copy. Returns the alerts dropped.
        """
        with self.store_lock:
            gone = self.book.forget_person(person_id, name)
            for alert in gone:
                self.publish_alert(
                    AlertBook.to_wire(
                        replace(
                            alert,
                            subject="(erased)",
                            message="about a person who was erased",
                            person_id=None,
                            state="resolved",
                            resolved_at=now,
                            live=False,
                        )
                    )
                )
            if gone:
                self._save()
            dropped = self.queue.discard(lambda item: item.names(person_id, name))
            if dropped:
                log.info("erasure: %d queued notifications dropped", dropped)
        return len(gone)

    def refresh_texts(self, now: datetime) -> None:
        """Rebuild the bot's ``/who`` and ``/status`` answers now (after an erasure: without the person)."""
        with self.store_lock:
            self._refresh_bot_texts(now)

    # --- API ---------------------------------------------------------------------------------------------------------

    def latest_rules(self) -> RuleSet:
        """The newest rule set version (the one in force now, or from the next instant on)."""
        return self.history.latest

    def list(self, state: str | None = None) -> list[AlertRecord]:
        """Alerts, open first, newest first within each state."""
        records = [a for a in self.book.alerts() if state is None or a.state == state]
        order = {"open": 0, "acknowledged": 1, "resolved": 2}
        return sorted(records, key=lambda a: (order.get(a.state, 3), -a.last_at.timestamp()))

    def acknowledge(self, alert_id: str, by: str, now: datetime) -> AlertRecord:
        """Acknowledge (raises KeyError for an unknown id, ValueError for a resolved one)."""
        return self._by_hand(self.book.acknowledge, alert_id, by, now)

    def resolve(self, alert_id: str, by: str, now: datetime) -> AlertRecord:
        """Resolve by hand."""
        return self._by_hand(self.book.resolve, alert_id, by, now)
