"""Alert rule settings: each rule's switches and thresholds, and :class:`AlertRules`, read from ``[alerts.<rule>]``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeAlias

from hub.notify.notification import SEVERITIES, Severity

RULE_NAME = re.compile(r"^[a-z0-9_]{1,64}$")
"""What a rule name may be (it is a config key and part of every alert's key)."""


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
class DeviceSilentRule:
    """A door device (not retired) the hub has heard nothing from (status, health, events) for ``after_min`` minutes.

    Catches a device that is gone without a last will (unplugged for good, network cut at the switch); one whose
    status is ``offline`` or ``stopped`` is left to ``device_offline``. The same
    limit flags it ``silent`` in ``devices.list`` and the TUI. Resolves itself when the device speaks again; retire
    a device taken out of service for good (``rollcall devices retire``).
    """

    enabled: bool = True
    severity: Severity = "warning"
    only_during_work: bool = False
    after_min: float = 30.0


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


@dataclass(frozen=True, slots=True)
class ForgottenCheckoutRule:
    """The morning report: at ``at`` (HH:MM, site-local) one alert names who forgot to check out the day before.

    "The day before" is the attendance day before the current one (see ``attendance.day_starts_at``), computed by
    the sign-off sweep; the alert says whether that day is signed off yet. Once per day (the last day reported is
    kept in the hub's file, so a restart does not repeat it); a day with no forgotten check-out raises nothing.
    Off by default: it names people and goes to the notifiers, so a site opts in. It resolves itself a day later.
    """

    enabled: bool = False
    severity: Severity = "info"
    only_during_work: bool = False
    at: str = "09:00"


RuleSettings: TypeAlias = (
    UnknownFaceRule
    | ExitDuringWorkRule
    | AbsentRule
    | LateArrivalRule
    | DeviceOfflineRule
    | BacklogRule
    | WorkstationIdleRule
    | HealthRule
    | ForgottenCheckoutRule
)

CLOCK_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
"""A wall-clock time setting, ``HH:MM`` (24-hour)."""


def _check_settings(name: str, settings: RuleSettings) -> None:
    for f in fields(settings):
        value = getattr(settings, f.name)
        where = f"{name}.{f.name}"
        if isinstance(f.default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{where}: must be true or false, got {value!r}")
        elif isinstance(f.default, str) and f.name == "at":
            if not isinstance(value, str) or not CLOCK_TIME.match(value):
                raise ValueError(f"{where}: must be a time of day 'HH:MM' (e.g. '09:00'), got {value!r}")
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
    device_silent: DeviceSilentRule = DeviceSilentRule()
    backlog: BacklogRule = BacklogRule()
    workstation_idle: WorkstationIdleRule = WorkstationIdleRule()
    health: HealthRule = HealthRule()
    forgotten_checkout: ForgottenCheckoutRule = ForgottenCheckoutRule()

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
                key: float(v) if isinstance(getattr(default, key), float) and is_whole_number(v) else v
                for key, v in raw.items()
            }
            candidate = replace(default, **values)
            _check_settings(f"{where}.{name}", candidate)
            parts[name] = candidate
        return cls(**parts)  # type: ignore[arg-type]


def is_whole_number(value: object) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)
