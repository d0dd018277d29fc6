"""Schedules: when is work time at a site, in its time zone, with breaks, holidays, a mode and a pause (pure).

A :class:`Schedule` says, in the site's time zone, which weekdays have which work periods (work hours minus breaks),
which dates are holidays, and a mode: ``automatic`` (follow the periods), ``on`` / ``off`` (manual override), plus an
optional pause (maintenance) until a given instant, during which it is never work time and no alert fires.

This module imports nothing else of :mod:`hub.alerts`: rule sets (:mod:`hub.alerts.history`) and rules build on it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, TypeAlias, get_args
from zoneinfo import ZoneInfo

from edge.protocol.times import WEEKDAYS, as_utc, require_aware
from hub.domain.zones import site_zone

Mode: TypeAlias = Literal["automatic", "on", "off"]
"""``automatic``: follow the work periods; ``on``: work time all the time; ``off``: never work time."""
MODES: frozenset[str] = frozenset(get_args(Mode))


_PERIOD_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class WorkPeriod:
    """One stretch of work on a day, local wall-clock times ``[start, end)``.

    ``end`` at or before ``start`` means the period runs past midnight into the next day (a night shift,
    ``22:00-06:00``); it belongs to the day it starts on. ``end`` 00:00 (written ``24:00`` in config) ends at midnight.
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("work period times are local wall-clock times: give them without a tzinfo")
        if self.start == self.end:
            raise ValueError(f"work period {self} is empty (start equals end)")

    @property
    def overnight(self) -> bool:
        """Whether the period ends on the next day."""
        return self.end <= self.start

    def __str__(self) -> str:
        end = "24:00" if self.end == time(0) else self.end.strftime("%H:%M")
        return f"{self.start.strftime('%H:%M')}-{end}"


@dataclass(frozen=True, slots=True)
class DaySchedule:
    """The work periods of one weekday (work hours minus breaks), kept sorted; they must not overlap.

    ``08:00-12:00`` and ``13:00-17:00`` is a day with a lunch break. At most one period runs past midnight, and it
    must be the last of the day.
    """

    periods: Sequence[WorkPeriod] = ()

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.periods, key=lambda p: p.start))
        for before, after in itertools.pairwise(ordered):
            if before.overnight or before.end > after.start:
                raise ValueError(f"work periods {before} and {after} overlap")
        object.__setattr__(self, "periods", ordered)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When work happens at a site (see the module docstring).

    ``weekdays`` maps ``date.weekday()`` (0 = Monday … 6 = Sunday) to that day's periods; a missing day has no work.
    ``holidays`` are local dates without work (a period starting on a holiday does not happen). ``paused_until``:
    before this instant it is never work time and alerts are gated (maintenance); None = not paused.
    """

    timezone: str
    weekdays: Mapping[int, DaySchedule] = field(default_factory=dict)
    holidays: AbstractSet[date] = frozenset()
    mode: Mode = "automatic"
    paused_until: datetime | None = None

    def __post_init__(self) -> None:
        site_zone(self.timezone)
        for day in self.weekdays:
            if not isinstance(day, int) or isinstance(day, bool) or not 0 <= day <= 6:
                raise ValueError(f"weekday keys are 0 (Monday) to 6 (Sunday), got {day!r}")
        if self.mode not in MODES:
            raise ValueError(f"schedule mode must be 'automatic', 'on' or 'off', got {self.mode!r}")
        if self.paused_until is not None:
            object.__setattr__(self, "paused_until", as_utc(self.paused_until, "paused_until"))
        object.__setattr__(self, "weekdays", dict(sorted(self.weekdays.items())))
        object.__setattr__(self, "holidays", frozenset(self.holidays))

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone."""
        return ZoneInfo(self.timezone)

    def to_dict(self) -> dict[str, object]:
        """The config-shaped, JSON-ready form that :func:`parse_schedule` reads (every weekday written)."""
        out: dict[str, object] = {"timezone": self.timezone}
        for index, name in enumerate(WEEKDAYS):
            day = self.weekdays.get(index)
            out[name] = [str(p) for p in day.periods] if day else []
        out["holidays"] = [d.isoformat() for d in sorted(self.holidays)]
        out["mode"] = self.mode
        out["paused_until"] = None if self.paused_until is None else self.paused_until.isoformat()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Schedule:
        """Same as :func:`parse_schedule`."""
        return parse_schedule(data)


def _to_utc(day: date, wall: time, zone: ZoneInfo) -> datetime:
    # fold=0: a repeated wall time (clocks go back) is its first occurrence; a missing one (clocks go forward) lands
    # just after the gap, so a period over the gap covers the hour that does exist.
    return datetime.combine(day, wall).replace(tzinfo=zone, fold=0).astimezone(UTC)


def _day_intervals(schedule: Schedule, day: date) -> list[tuple[datetime, datetime]]:
    """The UTC intervals of the periods starting on local date ``day`` (ignores mode and pause)."""
    if day in schedule.holidays:
        return []
    periods = schedule.weekdays.get(day.weekday())
    if periods is None:
        return []
    zone = schedule.zone
    return [
        (_to_utc(day, p.start, zone), _to_utc(day + timedelta(days=1) if p.overnight else day, p.end, zone))
        for p in periods.periods
    ]


def is_paused(schedule: Schedule, at: datetime) -> bool:
    """Whether ``at`` is inside the schedule's pause (maintenance): no work time, no alerts."""
    require_aware(at, "at")
    return schedule.paused_until is not None and at < schedule.paused_until


def is_work_time(schedule: Schedule, at: datetime) -> bool:
    """Whether ``at`` (an aware instant) is work time under ``schedule``.

    In order: paused → no; mode ``on`` → yes; mode ``off`` → no; otherwise ``at`` must lie in a period of its local
    date (not a holiday) or in an overnight period that started the local day before (not a holiday).
    """
    if is_paused(schedule, at):
        return False
    if schedule.mode != "automatic":
        return schedule.mode == "on"
    local = at.astimezone(schedule.zone).date()
    return any(
        start <= at < end for day in (local - timedelta(days=1), local) for start, end in _day_intervals(schedule, day)
    )


def work_start(schedule: Schedule, day: date) -> datetime | None:
    """When work starts (UTC) on local date ``day``: its first period's start; None on a holiday or a day off.

    This is the scheduled start: the mode and a pause do not change it (rules gate on :func:`is_work_time`).
    """
    intervals = _day_intervals(schedule, day)
    return intervals[0][0] if intervals else None


def _overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> timedelta:
    return max(timedelta(0), min(a[1], b[1]) - max(a[0], b[0]))


def work_time_between(schedule: Schedule, start: datetime, end: datetime) -> timedelta:
    """How much of ``[start, end)`` is work time under ``schedule`` (zero when ``end <= start``).

    Agrees with :func:`is_work_time` instant by instant: mode, pause, holidays and overnight periods included.
    """
    require_aware(start, "start")
    require_aware(end, "end")
    if end <= start:
        return timedelta(0)
    if schedule.paused_until is not None:
        start = max(start, schedule.paused_until)
        if end <= start:
            return timedelta(0)
    if schedule.mode != "automatic":
        return end - start if schedule.mode == "on" else timedelta(0)
    zone = schedule.zone
    first, last = start.astimezone(zone).date() - timedelta(days=1), end.astimezone(zone).date()
    total = timedelta(0)
    day = first
    while day <= last:
        for interval in _day_intervals(schedule, day):
            total += _overlap(interval, (start, end))
        day += timedelta(days=1)
    return total


# --- parsing ---------------------------------------------------------------------------------------------------


def check_keys(data: Mapping[str, object], allowed: Iterable[str], required: Iterable[str], where: str) -> None:
    """Refuse a table with a key not in ``allowed`` or without one of ``required``, naming it after ``where``."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: must be a table/object, got {data!r}")
    allowed = set(allowed)
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(allowed))})")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{where}.{missing[0]}: missing")


def parse_instant(value: object, where: str) -> datetime:
    """An ISO 8601 time with a UTC offset, in UTC; ``ValueError`` naming ``where`` otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"{where}: must be an ISO 8601 time with a UTC offset, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{where}: not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"{where}: needs a UTC offset (e.g. '2026-03-10T09:00:00+01:00'), got {value!r}")
    return parsed.astimezone(UTC)


def _parse_period(text: object, where: str) -> WorkPeriod:
    match = _PERIOD_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{where}: expected 'HH:MM-HH:MM', got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{where}: {text!r} is not a valid time range")
    try:
        return WorkPeriod(time(h1, m1), time(0) if h2 == 24 else time(h2, m2))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def parse_schedule(data: Mapping[str, object], where: str = "schedule") -> Schedule:
    """Build a schedule from its config form; a ValueError names the key that is wrong (``schedule.monday[1]: ...``).

    ``{"timezone": "Europe/Berlin", "monday": ["08:00-12:00", "13:00-17:00"], ..., "holidays": ["2026-12-25"],
    "mode": "automatic", "paused_until": null}``. ``timezone`` is required; a weekday left out (or an empty list) has
    no work; ``mode`` defaults to ``automatic``; ``paused_until`` is an ISO 8601 time with a UTC offset, or null.
    """
    check_keys(data, {"timezone", *WEEKDAYS, "holidays", "mode", "paused_until"}, {"timezone"}, where)
    timezone = data["timezone"]
    if not isinstance(timezone, str):
        raise ValueError(f"{where}.timezone: must be a string, got {timezone!r}")
    try:
        site_zone(timezone)
    except ValueError as exc:
        raise ValueError(f"{where}.timezone: {exc}") from None
    weekdays: dict[int, DaySchedule] = {}
    for index, name in enumerate(WEEKDAYS):
        if name not in data:
            continue
        items = data[name]
        if not isinstance(items, list):
            raise ValueError(f"{where}.{name}: must be a list of 'HH:MM-HH:MM' strings, got {items!r}")
        periods = [_parse_period(item, f"{where}.{name}[{i}]") for i, item in enumerate(items)]
        if periods:
            try:
                weekdays[index] = DaySchedule(periods)
            except ValueError as exc:
                raise ValueError(f"{where}.{name}: {exc}") from None
    holidays: set[date] = set()
    raw_holidays = data.get("holidays", [])
    if not isinstance(raw_holidays, list):
        raise ValueError(f"{where}.holidays: must be a list of 'YYYY-MM-DD' dates, got {raw_holidays!r}")
    for i, item in enumerate(raw_holidays):
        try:
            if not isinstance(item, str):
                raise ValueError
            holidays.add(date.fromisoformat(item))
        except ValueError:
            raise ValueError(f"{where}.holidays[{i}]: expected 'YYYY-MM-DD', got {item!r}") from None
    mode = data.get("mode", "automatic")
    if mode not in MODES:
        raise ValueError(f"{where}.mode: must be 'automatic', 'on' or 'off', got {mode!r}")
    raw_pause = data.get("paused_until")
    paused_until = None if raw_pause is None else parse_instant(raw_pause, f"{where}.paused_until")
    value: Mode = "on" if mode == "on" else "off" if mode == "off" else "automatic"
    return Schedule(timezone, weekdays, holidays, value, paused_until)
