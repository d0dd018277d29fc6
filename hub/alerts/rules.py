"""Alert rules: which facts raise which alert, judged by the rules in force at the time (pure).

Two kinds of evaluation turn plain facts into :class:`Condition` values (a rule firing or clearing for a key):

- :func:`evaluate_event`, once per newly stored door event, judged by the rules in force when the event happened
  (``history.in_force(event.at)``), also when it arrives late from a device that was offline when the rules changed.
  Event rules (``unknown_face``, ``exit_during_work``) are *momentary*: each event is one more occurrence.
- :func:`evaluate_state`, periodically (every few seconds), judged by the rules in force at ``now``. State rules
  (``device_offline``, ``backlog``, ``absent``, ``late_arrival``, ``workstation_idle``, ``health``) are *lasting*:
  they say "holds" (active) or "does not hold" (cleared) for every subject on every call.

The alert book (:mod:`hub.alerts.book`) folds conditions into alerts.

Gating: during a pause (``schedule.paused_until``) no rule fires. Outside work time only the rules whose
``only_during_work`` is False fire. Gating only stops *firing*: a condition that no longer holds still clears (a
device back online during maintenance resolves its alert), and an alert already open stays open across a break or
the evening (it is not resolved only because work time ended).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, TypeAlias

from edge.protocol import wire
from edge.protocol.times import as_utc, require_aware
from hub.alert_settings import RULE_NAME, AbsentRule, LateArrivalRule, WorkstationIdleRule
from hub.alerts.history import RuleHistory
from hub.alerts.schedule import Schedule, is_paused, is_work_time, work_start
from hub.domain.presence import PRESENCE_VALUES, ROLES, SIGHTING_TYPES, PresenceValue, Role, SightingType
from hub.notify.notification import SEVERITIES, Severity

DeviceStatus: TypeAlias = Literal["online", "offline", "stopped"]


# --- facts -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DoorEvent:
    """A stored door event as the rules see it; ``person_id`` None = an unknown face. ``role`` is the camera's."""

    event_id: str
    device: str
    person_id: str | None
    at: datetime
    type: SightingType
    role: Role

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", as_utc(self.at, f"event {self.event_id}: at"))
        if self.type not in SIGHTING_TYPES:
            raise ValueError(f"event {self.event_id}: type must be 'seen' or 'left', got {self.type!r}")
        if self.role not in ROLES:
            raise ValueError(f"event {self.event_id}: role must be 'entrance', 'exit' or 'both', got {self.role!r}")


def door_event(event: wire.Event, role: Role) -> DoorEvent:
    """The rules' view of a wire event from a door camera with ``role``."""
    return DoorEvent(event.event_id, event.device, event.person_id, event.at, event.type, role)


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What the hub knows about a door device: its status since ``status_at`` and its latest health report.

    ``status`` comes from the retained ``status`` topic (``offline`` is the last will); the health figures are from
    the report taken at ``at``. None = not known (that rule stays silent).
    """

    device: str
    status: DeviceStatus | None = None
    status_at: datetime | None = None
    outbox_depth: int | None = None
    oldest_unacked_s: float | None = None
    temperature_c: float | None = None
    disk_free_mb: float | None = None
    at: datetime | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in ("online", "offline", "stopped"):
            raise ValueError(f"device {self.device}: status must be online, offline or stopped, got {self.status!r}")
        for name in ("status_at", "at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_utc(value, f"device {self.device}: {name}"))


@dataclass(frozen=True, slots=True)
class PersonFacts:
    """A person's presence (``state`` since ``since``, from :mod:`hub.domain.presence`) and whether they arrived today.

    ``arrived_today``: attendance has a ``first_in`` for the current day. ``name`` is shown in alerts when given.
    """

    person_id: str
    state: PresenceValue
    since: datetime | None
    arrived_today: bool
    name: str | None = None

    def __post_init__(self) -> None:
        if self.state not in PRESENCE_VALUES:
            raise ValueError(f"person {self.person_id}: state must be 'in', 'out' or 'unknown', got {self.state!r}")
        if self.since is not None:
            object.__setattr__(self, "since", as_utc(self.since, f"person {self.person_id}: since"))


@dataclass(frozen=True, slots=True)
class WorkstationFacts:
    """A workstation agent: idle since ``idle_since`` (None = active now); ``user`` is shown in alerts when given."""

    agent: str
    idle_since: datetime | None
    user: str | None = None

    def __post_init__(self) -> None:
        if self.idle_since is not None:
            object.__setattr__(self, "idle_since", as_utc(self.idle_since, f"workstation {self.agent}: idle_since"))


# --- conditions ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    """A rule firing (``active``) or clearing for one key, e.g. ``("device_offline", "door-1")``.

    ``momentary``: each active condition is one more occurrence (event rules); otherwise the condition lasts and is
    repeated on every evaluation while it holds (state rules). ``fold_window``: for momentary rules, occurrences
    less than this apart are one episode (see :meth:`AlertBook.apply`).
    """

    rule: str
    key: tuple[str, str]
    severity: Severity
    subject: str
    message: str
    at: datetime
    device: str | None = None
    person_id: str | None = None
    active: bool = True
    momentary: bool = False
    fold_window: timedelta | None = None

    def __post_init__(self) -> None:
        if not RULE_NAME.match(self.rule):
            raise ValueError(f"rule name {self.rule!r} must be 1-64 of a-z, 0-9, '_'")
        if len(self.key) != 2 or self.key[0] != self.rule:
            raise ValueError(f"condition key {self.key!r} must be (rule, id) with rule {self.rule!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be 'info', 'warning' or 'critical', got {self.severity!r}")
        object.__setattr__(self, "at", as_utc(self.at, f"condition {self.key}: at"))
        if self.device is not None:
            wire.check_id(self.device, "device id")
        if self.person_id is not None:
            wire.check_id(self.person_id, "person id")
        if self.fold_window is not None and self.fold_window <= timedelta(0):
            raise ValueError(f"fold_window must be positive, got {self.fold_window}")


def _may_fire(only_during_work: bool, schedule: Schedule, at: datetime) -> bool:
    if is_paused(schedule, at):
        return False
    return not only_during_work or is_work_time(schedule, at)


def _clock(at: datetime, schedule: Schedule) -> str:
    return at.astimezone(schedule.zone).strftime("%Y-%m-%d %H:%M")


def _minutes(span: timedelta) -> str:
    return f"{span.total_seconds() / 60:.0f} min"


def evaluate_event(event: DoorEvent, history: RuleHistory, now: datetime) -> list[Condition]:
    """The conditions one newly stored door event raises, judged by the rules in force when it happened.

    Only ``seen`` events count (one per track; the track's ``left`` would count it twice). An unknown face fires
    ``unknown_face`` for its door; a known person at an ``exit`` camera fires ``exit_during_work`` for that person
    when the event's time is work time under the rules then (or always, with ``only_during_work`` False). Nothing
    fires while those rules were paused. Event rules never clear here: see :func:`evaluate_state` and the book.
    """
    require_aware(now, "now")
    if event.type != "seen":
        return []
    ruleset = history.in_force(event.at)
    schedule, rules = ruleset.schedule, ruleset.rules
    delay = now - event.at
    late = f" (reported {_minutes(delay)} late)" if delay >= timedelta(minutes=1) else ""
    if event.person_id is None:
        face = rules.unknown_face
        if not face.enabled or not _may_fire(face.only_during_work, schedule, event.at):
            return []
        return [
            Condition(
                "unknown_face",
                ("unknown_face", event.device),
                face.severity,
                event.device,
                f"unknown face at {event.device} at {_clock(event.at, schedule)}{late}",
                event.at,
                device=event.device,
                momentary=True,
                fold_window=timedelta(minutes=face.window_min),
            )
        ]
    exit_rule = rules.exit_during_work
    if event.role != "exit" or not exit_rule.enabled:
        return []
    if not _may_fire(exit_rule.only_during_work, schedule, event.at):
        return []
    return [
        Condition(
            "exit_during_work",
            ("exit_during_work", event.person_id),
            exit_rule.severity,
            event.person_id,
            f"{event.person_id} left by {event.device} at {_clock(event.at, schedule)} during work hours{late}",
            event.at,
            device=event.device,
            person_id=event.person_id,
            momentary=True,
        )
    ]


@dataclass(slots=True)
class _StateEval:
    schedule: Schedule
    now: datetime
    out: list[Condition] = field(default_factory=list)

    def emit(
        self,
        holds: bool,
        only_during_work: bool,
        rule: str,
        key_id: str,
        severity: Severity,
        subject: str,
        message: str,
        *,
        device: str | None = None,
        person_id: str | None = None,
    ) -> None:
        """Active when it holds and may fire now, cleared when it does not hold, nothing when it is gated."""
        if holds and not _may_fire(only_during_work, self.schedule, self.now):
            return
        self.out.append(
            Condition(rule, (rule, key_id), severity, subject, message, self.now, device, person_id, active=holds)
        )


def evaluate_state(
    devices: Iterable[DeviceFacts],
    people: Iterable[PersonFacts],
    workstations: Iterable[WorkstationFacts],
    history: RuleHistory,
    now: datetime,
    expected: Collection[str] = frozenset(),
) -> list[Condition]:
    """The state rules at ``now``, judged by the rules in force at ``now``; conditions carry ``at = now``.

    For every subject, each rule's condition is active, cleared, or left out (gated: it holds but may not fire now).

    ``expected``: person ids that are expected at work on work days (the ``late_arrival`` rule checks only them). A
    disabled rule clears (so disabling a rule resolves its alerts). Health-derived rules (``backlog``, ``health``)
    judge the latest report whatever its age and say nothing while a figure is unknown (None).
    """
    require_aware(now, "now")
    ruleset = history.in_force(now)
    schedule, rules = ruleset.schedule, ruleset.rules
    ev = _StateEval(schedule, now)

    for d in devices:
        off = rules.device_offline
        down = d.status == "offline" or (d.status == "stopped" and off.include_stopped)
        down_for = now - d.status_at if down and d.status_at is not None else None
        holds = off.enabled and down_for is not None and down_for >= timedelta(seconds=off.after_s)
        message = (
            f"{d.device} {d.status} since {_clock(d.status_at, schedule)} ({_minutes(down_for)})"
            if holds and d.status_at is not None and down_for is not None
            else f"{d.device} is {d.status or 'unknown'}"
        )
        ev.emit(
            holds, off.only_during_work, "device_offline", d.device, off.severity, d.device, message, device=d.device
        )

        quiet = rules.device_silent
        silent_for = now - d.at if d.at is not None else None
        holds = (  # an offline or stopped device is device_offline's: silent means gone without saying so
            quiet.enabled
            and d.status not in ("offline", "stopped")
            and silent_for is not None
            and silent_for > timedelta(minutes=quiet.after_min)
        )
        message = (
            f"{d.device} silent since {_clock(d.at, schedule)} ({_minutes(silent_for)})"
            if holds and d.at is not None and silent_for is not None
            else f"{d.device} was heard from"
        )
        ev.emit(
            holds, quiet.only_during_work, "device_silent", d.device, quiet.severity, d.device, message, device=d.device
        )

        bl = rules.backlog
        if d.outbox_depth is not None or d.oldest_unacked_s is not None:
            deep = d.outbox_depth is not None and d.outbox_depth > bl.max_depth
            old = d.oldest_unacked_s is not None and d.oldest_unacked_s > bl.max_oldest_unacked_s
            parts = []
            if deep:
                parts.append(f"outbox holds {d.outbox_depth} events (limit {bl.max_depth})")
            if old:
                parts.append(
                    f"oldest unacked event is {d.oldest_unacked_s:.0f} s old (limit {bl.max_oldest_unacked_s:.0f} s)"
                )
            message = f"{d.device}: " + ("; ".join(parts) if parts else "outbox within limits")
            ev.emit(
                bl.enabled and (deep or old),
                bl.only_during_work,
                "backlog",
                d.device,
                bl.severity,
                d.device,
                message,
                device=d.device,
            )

        hr = rules.health
        if d.temperature_c is not None:
            hot = d.temperature_c > hr.temperature_c_max
            ev.emit(
                hr.enabled and hot,
                hr.only_during_work,
                "health",
                f"{d.device}:temperature",
                hr.severity,
                d.device,
                f"{d.device} temperature {d.temperature_c:.1f} °C (max {hr.temperature_c_max:.1f} °C)",
                device=d.device,
            )
        if d.disk_free_mb is not None:
            full = d.disk_free_mb < hr.disk_free_mb_min
            ev.emit(
                hr.enabled and full,
                hr.only_during_work,
                "health",
                f"{d.device}:disk",
                hr.severity,
                d.device,
                f"{d.device} disk free {d.disk_free_mb:.0f} MB (min {hr.disk_free_mb_min:.0f} MB)",
                device=d.device,
            )

    today = now.astimezone(schedule.zone).date()
    start = work_start(schedule, today)
    late_rule = rules.late_arrival
    deadline = start + timedelta(minutes=late_rule.grace_min) if start is not None else None
    seen: set[str] = set()
    for p in people:
        seen.add(p.person_id)
        who = p.name or p.person_id
        ab = rules.absent
        out_since = p.since if p.arrived_today and p.state == "out" else None
        holds, message = _overdue(ev, history, ab, out_since, f"{who} away", "out since", f"{who} is {p.state}")
        ev.emit(holds, ab.only_during_work, "absent", p.person_id, ab.severity, who, message, person_id=p.person_id)

        ex = rules.exit_during_work
        if not ex.enabled or (ex.resolve_on_return and p.state == "in"):
            ev.emit(
                False,
                ex.only_during_work,
                "exit_during_work",
                p.person_id,
                ex.severity,
                who,
                f"{who} is {p.state}",
                person_id=p.person_id,
            )

        arrived = p.arrived_today or p.state == "in"
        _late(ev, late_rule, p.person_id, who, p.person_id in expected and not arrived, deadline)
    for person_id in sorted(set(expected) - seen):
        _late(ev, late_rule, person_id, person_id, True, deadline)

    idle_rule = rules.workstation_idle
    for w in workstations:
        who = f"{w.agent} ({w.user})" if w.user else w.agent
        holds, message = _overdue(ev, history, idle_rule, w.idle_since, f"{who} idle", "since", f"{who} is active")
        ev.emit(
            holds,
            idle_rule.only_during_work,
            "workstation_idle",
            w.agent,
            idle_rule.severity,
            who,
            message,
            device=w.agent,
        )
    return ev.out


def _span(history: RuleHistory, work_only: bool, since: datetime, now: datetime) -> timedelta:
    return history.work_time_between(since, now) if work_only else max(now - since, timedelta(0))


def _overdue(
    ev: _StateEval,
    history: RuleHistory,
    rule: AbsentRule | WorkstationIdleRule,
    since: datetime | None,
    what: str,
    since_label: str,
    otherwise: str,
) -> tuple[bool, str]:
    """Whether a state that began at ``since`` (None: not in it) has lasted ``rule.after_min``, and the message."""
    if not rule.enabled or since is None:
        return False, otherwise
    span = _span(history, rule.only_during_work, since, ev.now)
    message = (
        f"{what} {_minutes(span)}{' of work time' if rule.only_during_work else ''} "
        f"({since_label} {_clock(since, ev.schedule)})"
    )
    return span >= timedelta(minutes=rule.after_min), message


def _late(
    ev: _StateEval,
    rule: LateArrivalRule,
    person_id: str,
    who: str,
    missing: bool,
    deadline: datetime | None,
) -> None:
    holds = rule.enabled and missing and deadline is not None and ev.now >= deadline
    message = (
        f"{who} not arrived by {_clock(deadline, ev.schedule)} (work start + {rule.grace_min:g} min grace)"
        if holds and deadline is not None
        else f"{who}: no late arrival"
    )
    ev.emit(holds, rule.only_during_work, "late_arrival", person_id, rule.severity, who, message, person_id=person_id)
