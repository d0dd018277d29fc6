"""Alert rules and the alert book: which facts raise which alert, and how alerts fold, stand and resolve (pure).

Two kinds of evaluation turn plain facts into :class:`Condition` values (a rule firing or clearing for a key):

- :func:`evaluate_event`, once per newly stored door event, judged by the rules in force when the event happened
  (``history.in_force(event.at)``), also when it arrives late from a device that was offline when the rules changed.
  Event rules (``unknown_face``, ``exit_during_work``) are *momentary*: each event is one more occurrence.
- :func:`evaluate_state`, periodically (every few seconds), judged by the rules in force at ``now``. State rules
  (``device_offline``, ``backlog``, ``absent``, ``late_arrival``, ``workstation_idle``, ``health``) are *lasting*:
  they say "holds" (active) or "does not hold" (cleared) for every subject on every call.

The :class:`AlertBook` folds conditions into alerts (see :meth:`AlertBook.apply`).

Gating: during a pause (``schedule.paused_until``) no rule fires. Outside work time only the rules whose
``only_during_work`` is False fire. Gating only stops *firing*: a condition that no longer holds still clears (a
device back online during maintenance resolves its alert), and an alert already open stays open across a break or
the evening (it is not resolved only because work time ended).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeAlias, get_args

from ulid import ULID

from edge.protocol import wire
from hub.presence import PRESENCE_VALUES, ROLES, SIGHTING_TYPES, PresenceValue, Role, SightingType
from hub.schedule import RuleHistory, Schedule, is_paused, is_work_time, work_start

Severity: TypeAlias = Literal["info", "warning", "critical"]
SEVERITIES: frozenset[str] = frozenset(get_args(Severity))

AlertState: TypeAlias = Literal["open", "acknowledged", "resolved"]
ALERT_STATES: frozenset[str] = frozenset(get_args(AlertState))

ChangeKind: TypeAlias = Literal["opened", "folded", "acknowledged", "resolved"]

DeviceStatus: TypeAlias = Literal["online", "offline", "stopped"]

_RULE_RE = re.compile(r"^[a-z0-9_]{1,64}$")


def _check_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime (UTC), got naive {value.isoformat()}")


# --- rule settings ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnknownFaceRule:
    """An unknown face (a ``seen`` event naming nobody) at a door; one alert per door.

    ``window_min`` is the per-door rate limit: occurrences less than this apart fold into one alert (its count), so
    a door opens at most one new alert per window; the alert resolves itself once a window passes with none.
    Fires off-hours too by default (an unknown face at night matters more, not less).
    """

    enabled: bool = True
    severity: Severity = "warning"
    only_during_work: bool = False
    window_min: float = 10.0


@dataclass(frozen=True, slots=True)
class ExitDuringWorkRule:
    """A known person seen at an ``exit`` camera during work time (a violation); one alert per person.

    ``both`` cameras never say someone went out, so they never fire this. Further exits while the alert stands fold
    into it. With ``resolve_on_return`` the alert resolves itself when the person's presence is ``in`` again.
    """

    enabled: bool = True
    severity: Severity = "warning"
    only_during_work: bool = True
    resolve_on_return: bool = True


@dataclass(frozen=True, slots=True)
class AbsentRule:
    """A person who arrived today and is ``out`` again for ``after_min`` minutes of work time; one alert per person.

    Breaks, evenings and pauses do not count; with ``only_during_work`` False, wall-clock minutes count and it fires
    at any hour.

    Resolves itself when they are ``in`` again, or when a new day starts (they have not arrived today).
    """

    enabled: bool = True
    severity: Severity = "warning"
    only_during_work: bool = True
    after_min: float = 30.0


@dataclass(frozen=True, slots=True)
class LateArrivalRule:
    """An expected person not arrived ``grace_min`` minutes after the day's scheduled work start (work days only).

    Resolves itself when they arrive (presence ``in`` or arrived today) and on the next day.
    """

    enabled: bool = True
    severity: Severity = "info"
    only_during_work: bool = True
    grace_min: float = 10.0


@dataclass(frozen=True, slots=True)
class DeviceOfflineRule:
    """A door device whose status is ``offline`` (its last will) for ``after_s`` seconds.

    ``stopped`` (a clean exit) counts only with ``include_stopped``. Resolves itself when the device is online again.
    """

    enabled: bool = True
    severity: Severity = "critical"
    only_during_work: bool = False
    after_s: float = 120.0
    include_stopped: bool = False


@dataclass(frozen=True, slots=True)
class BacklogRule:
    """A device whose outbox is too deep or whose oldest unacked event is too old (latest health report).

    Fires when the outbox holds more than ``max_depth`` events or the oldest unacked event is older than
    ``max_oldest_unacked_s``. Resolves itself when both are within limits.
    """

    enabled: bool = True
    severity: Severity = "warning"
    only_during_work: bool = False
    max_depth: int = 500
    max_oldest_unacked_s: float = 900.0


@dataclass(frozen=True, slots=True)
class WorkstationIdleRule:
    """A workstation idle for ``after_min`` minutes of work time; one alert per agent.

    Off by default: it watches people, so a site opts in. Resolves itself when the workstation is active again.
    """

    enabled: bool = False
    severity: Severity = "info"
    only_during_work: bool = True
    after_min: float = 15.0


@dataclass(frozen=True, slots=True)
class HealthRule:
    """A device too hot or too short of disk (latest health report).

    Fires above ``temperature_c_max`` or below ``disk_free_mb_min``; temperature and disk are separate alerts (keys
    ``<device>:temperature`` and ``<device>:disk``). Each resolves itself when back within its limit.
    """

    enabled: bool = True
    severity: Severity = "warning"
    only_during_work: bool = False
    temperature_c_max: float = 80.0
    disk_free_mb_min: float = 500.0


RuleSettings: TypeAlias = (
    UnknownFaceRule
    | ExitDuringWorkRule
    | AbsentRule
    | LateArrivalRule
    | DeviceOfflineRule
    | BacklogRule
    | WorkstationIdleRule
    | HealthRule
)


def _check_settings(name: str, settings: RuleSettings) -> None:
    for f in fields(settings):
        value = getattr(settings, f.name)
        where = f"{name}.{f.name}"
        if isinstance(f.default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{where}: must be true or false, got {value!r}")
        elif f.name == "severity":
            if value not in SEVERITIES:
                raise ValueError(f"{where}: must be 'info', 'warning' or 'critical', got {value!r}")
        elif isinstance(f.default, int):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{where}: must be a whole number >= 0, got {value!r}")
        elif isinstance(f.default, float) and (
            not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < float("inf")
        ):
            raise ValueError(f"{where}: must be a positive number, got {value!r}")


@dataclass(frozen=True, slots=True)
class AlertRules:
    """Every alert rule's settings; the defaults are in each rule's class (see the module docstring for gating)."""

    unknown_face: UnknownFaceRule = UnknownFaceRule()
    exit_during_work: ExitDuringWorkRule = ExitDuringWorkRule()
    absent: AbsentRule = AbsentRule()
    late_arrival: LateArrivalRule = LateArrivalRule()
    device_offline: DeviceOfflineRule = DeviceOfflineRule()
    backlog: BacklogRule = BacklogRule()
    workstation_idle: WorkstationIdleRule = WorkstationIdleRule()
    health: HealthRule = HealthRule()

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_settings(f.name, getattr(self, f.name))

    def to_dict(self) -> dict[str, dict[str, object]]:
        """A JSON-ready dict: ``{rule: {setting: value}}``, every setting written."""
        return {
            f.name: {g.name: getattr(getattr(self, f.name), g.name) for g in fields(getattr(self, f.name))}
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object], where: str = "alerts") -> AlertRules:
        """Build from a config-like dict; rules and settings left out keep their defaults.

        Raises ValueError naming the key that is wrong (``alerts.absent.after_min: must be a positive number``).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: must be a table/object, got {data!r}")
        known = {f.name: f for f in fields(cls)}
        parts: dict[str, RuleSettings] = {}
        for name, raw in data.items():
            if name not in known:
                raise ValueError(f"{where}.{name}: unknown rule (known: {', '.join(known)})")
            if not isinstance(raw, Mapping):
                raise ValueError(f"{where}.{name}: must be a table/object, got {raw!r}")
            default: RuleSettings = getattr(cls(), name)
            settings = {g.name for g in fields(default)}
            for key in raw:
                if key not in settings:
                    raise ValueError(f"{where}.{name}.{key}: unknown setting (known: {', '.join(sorted(settings))})")
            values: dict[str, Any] = {
                key: float(v) if isinstance(getattr(default, key), float) and _is_int(v) else v
                for key, v in raw.items()
            }
            candidate = replace(default, **values)
            _check_settings(f"{where}.{name}", candidate)
            parts[name] = candidate
        return cls(**parts)  # type: ignore[arg-type]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- facts -----------------------------------------------------------------------------------------------------


def _utc(value: datetime, what: str) -> datetime:
    _check_aware(value, what)
    return value.astimezone(UTC)


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
        object.__setattr__(self, "at", _utc(self.at, f"event {self.event_id}: at"))
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
                object.__setattr__(self, name, _utc(value, f"device {self.device}: {name}"))


@dataclass(frozen=True, slots=True)
class PersonFacts:
    """A person's presence (``state`` since ``since``, from :mod:`hub.presence`) and whether they arrived today.

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
            object.__setattr__(self, "since", _utc(self.since, f"person {self.person_id}: since"))


@dataclass(frozen=True, slots=True)
class WorkstationFacts:
    """A workstation agent: idle since ``idle_since`` (None = active now); ``user`` is shown in alerts when given."""

    agent: str
    idle_since: datetime | None
    user: str | None = None

    def __post_init__(self) -> None:
        if self.idle_since is not None:
            object.__setattr__(self, "idle_since", _utc(self.idle_since, f"workstation {self.agent}: idle_since"))


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
        if not _RULE_RE.match(self.rule):
            raise ValueError(f"rule name {self.rule!r} must be 1-64 of a-z, 0-9, '_'")
        if len(self.key) != 2 or self.key[0] != self.rule:
            raise ValueError(f"condition key {self.key!r} must be (rule, id) with rule {self.rule!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be 'info', 'warning' or 'critical', got {self.severity!r}")
        object.__setattr__(self, "at", _utc(self.at, f"condition {self.key}: at"))
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
    _check_aware(now, "now")
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
    _check_aware(now, "now")
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
        away = (
            _span(history, ab.only_during_work, p.since, now)
            if ab.enabled and p.arrived_today and p.state == "out" and p.since is not None
            else None
        )
        holds = away is not None and away >= timedelta(minutes=ab.after_min)
        message = (
            f"{who} away {_minutes(away)}{' of work time' if ab.only_during_work else ''} "
            f"(out since {_clock(p.since, schedule)})"
            if away is not None and p.since is not None
            else f"{who} is {p.state}"
        )
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
        idle = (
            _span(history, idle_rule.only_during_work, w.idle_since, now)
            if idle_rule.enabled and w.idle_since is not None
            else None
        )
        holds = idle is not None and idle >= timedelta(minutes=idle_rule.after_min)
        message = (
            f"{who} idle {_minutes(idle)}{' of work time' if idle_rule.only_during_work else ''} "
            f"(since {_clock(w.idle_since, schedule)})"
            if idle is not None and w.idle_since is not None
            else f"{who} is active"
        )
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


# --- the alert book --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert as it stands. ``live``: its episode goes on, so occurrences still fold into it (see the book)."""

    alert_id: str
    rule: str
    key: tuple[str, str]
    severity: Severity
    subject: str
    message: str
    state: AlertState
    first_at: datetime
    last_at: datetime
    count: int
    device: str | None
    person_id: str | None
    momentary: bool
    fold_window_s: float | None
    live: bool
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (times ISO 8601 in UTC, key as a 2-item list)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> AlertRecord:
        """Read back what :meth:`to_dict` wrote; raises ValueError naming the field that is wrong."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"alert record: unknown field {unknown[0]!r}")
        values: dict[str, object] = {}
        for name in names:
            if name not in data:
                if name in ("acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at"):
                    continue
                raise ValueError(f"alert record: missing field {name!r}")
            value = data[name]
            if name.endswith("_at") and value is not None:
                if not isinstance(value, str):
                    raise ValueError(f"alert record: {name} must be an ISO 8601 string, got {value!r}")
                try:
                    value = _utc(datetime.fromisoformat(value), name)
                except ValueError:
                    raise ValueError(f"alert record: {name} is not an ISO 8601 time with offset: {value!r}") from None
            elif name == "key":
                if not isinstance(value, list | tuple) or len(value) != 2 or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"alert record: key must be a list of two strings, got {value!r}")
                value = (value[0], value[1])
            values[name] = value
        record = cls(**values)  # type: ignore[arg-type]
        _check_record(record)
        return record


def _check_record(record: AlertRecord) -> None:
    checks = {
        "alert_id": isinstance(record.alert_id, str) and bool(re.match(r"^[0-9A-HJKMNP-TV-Z]{26}$", record.alert_id)),
        "rule": isinstance(record.rule, str) and bool(_RULE_RE.match(record.rule)) and record.key[0] == record.rule,
        "severity": record.severity in SEVERITIES,
        "state": record.state in ALERT_STATES,
        "count": _is_int(record.count) and record.count >= 1,
        "subject": isinstance(record.subject, str),
        "message": isinstance(record.message, str),
        "momentary": isinstance(record.momentary, bool),
        "live": isinstance(record.live, bool),
        "fold_window_s": record.fold_window_s is None
        or (isinstance(record.fold_window_s, int | float) and not isinstance(record.fold_window_s, bool)),
    }
    for name, ok in checks.items():
        if not ok:
            raise ValueError(f"alert record: {name} is not valid: {getattr(record, name)!r}")


@dataclass(frozen=True, slots=True)
class AlertChange:
    """What one step did to one alert; ``alert`` is the alert after it (publish ``to_wire(change.alert)``)."""

    kind: ChangeKind
    alert: AlertRecord


def to_wire(alert: AlertRecord) -> wire.Alert:
    """The wire payload of an alert (subject and message cut to the contract's limits)."""
    return wire.Alert(
        alert_id=alert.alert_id,
        rule=alert.rule,
        severity=alert.severity,
        state=alert.state,
        subject=_cut(alert.subject, 256),
        message=_cut(alert.message, 2000),
        first_at=alert.first_at,
        last_at=alert.last_at,
        count=alert.count,
        device=alert.device,
        person_id=alert.person_id,
        acknowledged_by=None if alert.acknowledged_by is None else _cut(alert.acknowledged_by, 256),
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AlertBook:
    """Every alert and its state: a pure state machine driven by conditions and people, with ``now`` passed in.

    Folding (:meth:`apply`): each key has at most one *live* alert, the one whose episode goes on.

    - A lasting condition (state rule) that holds while its key has a live alert changes nothing (no count, no
      publish: it is the same episode). Otherwise it opens a new alert (count 1).
    - A momentary condition (event rule) folds into the key's live alert: count + 1, ``first_at``/``last_at``
      widened to include it. With a ``fold_window`` (``unknown_face``), the episode ends once the window passes
      after its last occurrence: an occurrence that late opens a new alert, and the book resolves the old one itself
      at the first :meth:`apply` with ``now >= last_at + window``.
    - A cleared condition ends the key's episode and resolves its alert if it is open or acknowledged (auto: no
      ``resolved_by``). A later firing opens a NEW alert.
    - Acknowledged alerts keep folding (count, last_at) and stay acknowledged. A resolved-by-hand alert's episode
      goes on until its condition clears (or its window passes): occurrences meanwhile fold into it silently and it
      stays resolved (the supervisor is not paged again for what they have handled).
    """

    def __init__(self, alerts: Iterable[AlertRecord] = ()) -> None:
        self._alerts: dict[str, AlertRecord] = {}
        self._live: dict[tuple[str, str], str] = {}
        for alert in alerts:
            if alert.alert_id in self._alerts:
                raise ValueError(f"alert {alert.alert_id} appears twice")
            if alert.live and alert.key in self._live:
                raise ValueError(f"key {alert.key} has two live alerts")
            self._alerts[alert.alert_id] = alert
            if alert.live:
                self._live[alert.key] = alert.alert_id

    # -- reading --

    def get(self, alert_id: str) -> AlertRecord:
        """One alert by id (KeyError when unknown)."""
        try:
            return self._alerts[alert_id]
        except KeyError:
            raise KeyError(f"no alert {alert_id!r}") from None

    def alerts(self) -> list[AlertRecord]:
        """Every alert, in the order they were opened."""
        return list(self._alerts.values())

    def open_alerts(self) -> list[AlertRecord]:
        """Alerts that are open or acknowledged, in the order they were opened."""
        return [a for a in self._alerts.values() if a.state != "resolved"]

    def live_alert(self, key: tuple[str, str]) -> AlertRecord | None:
        """The alert whose episode goes on for ``key``, if any."""
        alert_id = self._live.get(key)
        return None if alert_id is None else self._alerts[alert_id]

    @staticmethod
    def to_wire(alert: AlertRecord) -> wire.Alert:
        """Same as the module's :func:`to_wire`."""
        return to_wire(alert)

    # -- changing --

    def apply(self, conditions: Iterable[Condition], now: datetime) -> list[AlertChange]:
        """Fold conditions into alerts (in time order), then resolve momentary episodes whose window has passed."""
        _check_aware(now, "now")
        now = now.astimezone(UTC)
        changes: list[AlertChange] = []
        for condition in sorted(conditions, key=lambda c: c.at):
            if condition.active:
                self._fire(condition, now, changes)
            else:
                live = self.live_alert(condition.key)
                if live is not None:
                    self._end(live, now, changes)
        for alert_id in list(self._live.values()):
            alert = self._alerts[alert_id]
            if alert.fold_window_s is not None and now >= alert.last_at + timedelta(seconds=alert.fold_window_s):
                self._end(alert, now, changes)
        return changes

    def acknowledge(self, alert_id: str, by: str, now: datetime) -> AlertChange | None:
        """A supervisor takes an open alert on; None when it was already acknowledged. Resolved: ValueError."""
        _check_aware(now, "now")
        _check_who(by)
        alert = self.get(alert_id)
        if alert.state == "resolved":
            raise ValueError(f"alert {alert_id} is already resolved")
        if alert.state == "acknowledged":
            return None
        return self._put(
            "acknowledged",
            replace(alert, state="acknowledged", acknowledged_by=by, acknowledged_at=now.astimezone(UTC)),
        )

    def resolve(self, alert_id: str, by: str, now: datetime) -> AlertChange | None:
        """A supervisor resolves an alert by hand; None when it was already resolved.

        Its episode goes on (see the class docstring), so the same condition does not open a new alert until it has
        cleared.
        """
        _check_aware(now, "now")
        _check_who(by)
        alert = self.get(alert_id)
        if alert.state == "resolved":
            return None
        return self._put("resolved", replace(alert, state="resolved", resolved_by=by, resolved_at=now.astimezone(UTC)))

    def prune(self, resolved_before: datetime) -> int:
        """Forget resolved alerts resolved before the given time whose episode has ended; returns how many."""
        _check_aware(resolved_before, "resolved_before")
        gone = [
            a.alert_id
            for a in self._alerts.values()
            if a.state == "resolved" and not a.live and a.resolved_at is not None and a.resolved_at < resolved_before
        ]
        for alert_id in gone:
            del self._alerts[alert_id]
        return len(gone)

    # -- persistence --

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict: ``{"alerts": [...]}`` in the order they were opened."""
        return {"alerts": [a.to_dict() for a in self._alerts.values()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> AlertBook:
        """Read back what :meth:`to_dict` wrote."""
        if set(data) != {"alerts"} or not isinstance(data["alerts"], list):
            raise ValueError("alert book: expected {'alerts': [...]}")
        records = []
        for index, item in enumerate(data["alerts"]):
            if not isinstance(item, Mapping):
                raise ValueError(f"alert book: alerts[{index}] must be an object")
            records.append(AlertRecord.from_dict(item))
        return cls(records)

    # -- internals --

    def _put(self, kind: ChangeKind, alert: AlertRecord) -> AlertChange:
        self._alerts[alert.alert_id] = alert
        if alert.live:
            self._live[alert.key] = alert.alert_id
        elif self._live.get(alert.key) == alert.alert_id:
            del self._live[alert.key]
        return AlertChange(kind, alert)

    def _end(self, alert: AlertRecord, now: datetime, changes: list[AlertChange]) -> None:
        if alert.state == "resolved":
            self._put("resolved", replace(alert, live=False))  # ended quietly: it was resolved by hand already
            return
        changes.append(self._put("resolved", replace(alert, state="resolved", resolved_at=now, live=False)))

    def _fire(self, condition: Condition, now: datetime, changes: list[AlertChange]) -> None:
        live = self.live_alert(condition.key)
        if live is not None:
            window = live.fold_window_s
            if condition.momentary and window is not None and condition.at >= live.last_at + timedelta(seconds=window):
                self._end(live, now, changes)  # the episode ended before this occurrence
            elif condition.momentary:
                folded = replace(
                    live,
                    count=live.count + 1,
                    first_at=min(live.first_at, condition.at),
                    last_at=max(live.last_at, condition.at),
                )
                changes.append(self._put("folded", folded))
                return
            else:
                return  # a lasting condition that still holds: the same episode
        window_s = condition.fold_window.total_seconds() if condition.fold_window is not None else None
        alert = AlertRecord(
            alert_id=str(ULID.from_datetime(now)),
            rule=condition.rule,
            key=condition.key,
            severity=condition.severity,
            subject=condition.subject,
            message=condition.message,
            state="open",
            first_at=condition.at,
            last_at=condition.at,
            count=1,
            device=condition.device,
            person_id=condition.person_id,
            momentary=condition.momentary,
            fold_window_s=window_s,
            live=True,
        )
        changes.append(self._put("opened", alert))


def _check_who(by: str) -> None:
    if not isinstance(by, str) or not by.strip() or len(by) > 256:
        raise ValueError(f"who acknowledges or resolves must be a non-empty name of at most 256 characters, got {by!r}")
