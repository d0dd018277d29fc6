"""Schedules, versioned rules, alert rules and the alert book: table-driven cases with controlled time in Europe/Berlin.

The week of Monday 2026-03-09 is ordinary CET (UTC+1); the office works 08:00-12:00 and 13:00-17:00 on weekdays and
not on 2026-12-25.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from ulid import ULID

from edge.protocol import wire
from hub.alert_settings import (
    AbsentRule,
    AlertRules,
    BacklogRule,
    DeviceOfflineRule,
    ExitDuringWorkRule,
    HealthRule,
    LateArrivalRule,
    UnknownFaceRule,
    WorkstationIdleRule,
)
from hub.alerts.book import RESOLVED_KEPT_FOR, RESOLVED_KEPT_MAX, AlertBook, AlertChange, AlertRecord, to_wire
from hub.alerts.history import RuleHistory, RuleSet
from hub.alerts.rules import (
    Condition,
    DeviceFacts,
    DoorEvent,
    PersonFacts,
    WorkstationFacts,
    door_event,
    evaluate_event,
    evaluate_state,
)
from hub.alerts.schedule import (
    DaySchedule,
    Schedule,
    WorkPeriod,
    is_paused,
    is_work_time,
    parse_schedule,
    work_start,
    work_time_between,
)
from tests.helpers.factories import make_event

BERLIN = ZoneInfo("Europe/Berlin")
MON, TUE, WED, THU, FRI, SAT, SUN = (f"2026-03-{d:02d}" for d in range(9, 16))
WORKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")
OFFICE_CONFIG: dict[str, object] = {
    "timezone": "Europe/Berlin",
    **{day: ["08:00-12:00", "13:00-17:00"] for day in WORKDAYS},
    "holidays": ["2026-12-25"],
    "mode": "automatic",
}
OFFICE = parse_schedule(OFFICE_CONFIG)
EARLY = parse_schedule({**OFFICE_CONFIG, **{day: ["07:00-12:00", "13:00-17:00"] for day in WORKDAYS}})
NIGHT = parse_schedule({"timezone": "Europe/Berlin", "monday": ["22:00-06:00"]})
DST_SUNDAY = parse_schedule({"timezone": "Europe/Berlin", "sunday": ["01:00-05:00"]})  # 2026-03-29: 02:00 → 03:00
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
TOPICS = wire.Topics("hq")


def t(local: str) -> datetime:
    """A Berlin wall time ('2026-03-09 08:00'), or one with an explicit offset, as UTC."""
    parsed = datetime.fromisoformat(local)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=BERLIN)
    return parsed.astimezone(UTC)


def one_version(schedule: Schedule = OFFICE, rules: AlertRules | None = None) -> RuleHistory:
    """A history with a single rule set, in force since long before the tests' week."""
    return RuleHistory([RuleSet(1, EPOCH, schedule, rules or AlertRules())])


def paused(schedule: Schedule, until: str) -> Schedule:
    return replace(schedule, paused_until=t(until))


def seen(local: str, device: str = "door-1", person: str | None = None, role: str = "entrance") -> DoorEvent:
    """A `seen` event (one per track) at a door; ``person`` None is an unknown face."""
    return DoorEvent(f"{device}|{local}|{person}", device, person, t(local), "seen", role)  # type: ignore[arg-type]


def keys(conditions: list[Condition]) -> list[tuple[str, str]]:
    return [c.key for c in conditions]


def state_of(conditions: list[Condition], key: tuple[str, str]) -> bool | None:
    """True: the rule fires for ``key``; False: it clears; None: nothing said about it (gated or unknown)."""
    found = [c.active for c in conditions if c.key == key]
    assert len(found) <= 1, f"{key} emitted {len(found)} times"
    return found[0] if found else None


# --- schedules -------------------------------------------------------------------------------------------------

WORK_TIME_CASES: list[tuple[str, Schedule, str, bool]] = [
    ("before work", OFFICE, f"{MON} 07:59", False),
    ("work starts", OFFICE, f"{MON} 08:00", True),
    ("last morning minute", OFFICE, f"{MON} 11:59", True),
    ("lunch break starts", OFFICE, f"{MON} 12:00", False),
    ("lunch break", OFFICE, f"{MON} 12:30", False),
    ("afternoon starts", OFFICE, f"{MON} 13:00", True),
    ("last afternoon minute", OFFICE, f"{MON} 16:59", True),
    ("work ends", OFFICE, f"{MON} 17:00", False),
    ("night", OFFICE, f"{MON} 23:00", False),
    ("friday", OFFICE, f"{FRI} 10:00", True),
    ("saturday", OFFICE, f"{SAT} 10:00", False),
    ("sunday", OFFICE, f"{SUN} 10:00", False),
    ("day before a holiday", OFFICE, "2026-12-24 10:00", True),
    ("holiday", OFFICE, "2026-12-25 10:00", False),
    ("summer time: work starts 08:00 CEST", OFFICE, "2026-06-01 08:00", True),
    ("summer time: 07:59 CEST", OFFICE, "2026-06-01 07:59", False),
    ("manual on: saturday night", replace(OFFICE, mode="on"), f"{SAT} 03:00", True),
    ("manual on: lunch break", replace(OFFICE, mode="on"), f"{MON} 12:30", True),
    ("manual off: work hours", replace(OFFICE, mode="off"), f"{MON} 10:00", False),
    ("paused: work hours", paused(OFFICE, f"{MON} 10:30"), f"{MON} 10:00", False),
    ("pause over", paused(OFFICE, f"{MON} 10:30"), f"{MON} 10:30", True),
    ("pause beats manual on", paused(replace(OFFICE, mode="on"), f"{MON} 10:30"), f"{MON} 10:29", False),
    ("night shift starts", NIGHT, f"{MON} 22:00", True),
    ("night shift after midnight", NIGHT, f"{TUE} 05:59", True),
    ("night shift ends", NIGHT, f"{TUE} 06:00", False),
    ("no night shift from tuesday", NIGHT, f"{TUE} 23:00", False),
    ("night shift starting on a holiday", replace(NIGHT, holidays={date(2026, 3, 9)}), f"{TUE} 05:00", False),
    ("DST day: before the gap", DST_SUNDAY, "2026-03-29T01:30+01:00", True),
    ("DST day: after the gap", DST_SUNDAY, "2026-03-29T04:59+02:00", True),
    ("DST day: period ends", DST_SUNDAY, "2026-03-29T05:00+02:00", False),
]


@pytest.mark.parametrize(
    ("schedule", "at", "expected"), [c[1:] for c in WORK_TIME_CASES], ids=[c[0] for c in WORK_TIME_CASES]
)
def test_is_work_time(schedule: Schedule, at: str, expected: bool) -> None:
    assert is_work_time(schedule, t(at)) is expected


def test_pause_is_reported_as_such() -> None:
    schedule = paused(OFFICE, f"{MON} 10:30")
    assert is_paused(schedule, t(f"{MON} 10:29"))
    assert not is_paused(schedule, t(f"{MON} 10:30"))
    assert not is_paused(OFFICE, t(f"{MON} 10:00"))


WORK_START_CASES: list[tuple[str, Schedule, str, str | None]] = [
    ("monday", OFFICE, MON, f"{MON} 08:00"),
    ("saturday", OFFICE, SAT, None),
    ("holiday", OFFICE, "2026-12-25", None),
    ("summer time", OFFICE, "2026-06-01", "2026-06-01 08:00"),
    ("earlier start", EARLY, MON, f"{MON} 07:00"),
    ("night shift", NIGHT, MON, f"{MON} 22:00"),
    ("mode off does not move the scheduled start", replace(OFFICE, mode="off"), MON, f"{MON} 08:00"),
]


@pytest.mark.parametrize(
    ("schedule", "day", "expected"), [c[1:] for c in WORK_START_CASES], ids=[c[0] for c in WORK_START_CASES]
)
def test_work_start(schedule: Schedule, day: str, expected: str | None) -> None:
    start = work_start(schedule, date.fromisoformat(day))
    assert start == (t(expected) if expected else None)
    if start is not None:
        assert start.tzinfo == UTC


WORK_BETWEEN_CASES: list[tuple[str, Schedule, str, str, timedelta]] = [
    ("whole day", OFFICE, f"{MON} 07:00", f"{MON} 18:00", timedelta(hours=8)),
    ("over lunch", OFFICE, f"{MON} 11:00", f"{MON} 14:00", timedelta(hours=2)),
    ("over a weekend", OFFICE, f"{FRI} 16:00", "2026-03-16 09:00", timedelta(hours=2)),
    ("reversed interval", OFFICE, f"{MON} 14:00", f"{MON} 11:00", timedelta(0)),
    ("night shift", NIGHT, f"{MON} 21:00", f"{TUE} 07:00", timedelta(hours=8)),
    ("DST day: the missing hour is not work", DST_SUNDAY, "2026-03-28 12:00", "2026-03-30 00:00", timedelta(hours=3)),
    ("manual on", replace(OFFICE, mode="on"), f"{SAT} 00:00", f"{SAT} 10:00", timedelta(hours=10)),
    ("manual off", replace(OFFICE, mode="off"), f"{MON} 00:00", f"{TUE} 00:00", timedelta(0)),
    ("paused until 10:30", paused(OFFICE, f"{MON} 10:30"), f"{MON} 08:00", f"{MON} 12:00", timedelta(hours=1.5)),
]


@pytest.mark.parametrize(
    ("schedule", "start", "end", "expected"),
    [c[1:] for c in WORK_BETWEEN_CASES],
    ids=[c[0] for c in WORK_BETWEEN_CASES],
)
def test_work_time_between(schedule: Schedule, start: str, end: str, expected: timedelta) -> None:
    assert work_time_between(schedule, t(start), t(end)) == expected


@pytest.mark.parametrize(
    "schedule",
    [OFFICE, NIGHT, DST_SUNDAY, paused(OFFICE, "2026-03-24 10:30"), replace(OFFICE, holidays={date(2026, 3, 27)})],
    ids=["office", "night", "dst", "paused", "holiday"],
)
def test_work_time_between_agrees_with_is_work_time_minute_by_minute(schedule: Schedule) -> None:
    start = t("2026-03-23 00:00")  # the week of the DST change
    minutes = 8 * 24 * 60
    counted = sum(is_work_time(schedule, start + timedelta(minutes=m)) for m in range(minutes))
    assert counted > 0
    assert work_time_between(schedule, start, start + timedelta(minutes=minutes)) == timedelta(minutes=counted)


def test_day_schedule_sorts_and_refuses_overlaps() -> None:
    day = DaySchedule(
        [
            WorkPeriod(time(13), time(17)),
            WorkPeriod(time(8), time(12)),
        ]
    )
    assert [str(p) for p in day.periods] == ["08:00-12:00", "13:00-17:00"]
    with pytest.raises(ValueError, match="overlap"):
        parse_schedule({"timezone": "UTC", "monday": ["08:00-12:30", "12:00-17:00"]})
    with pytest.raises(ValueError, match="overlap"):
        parse_schedule({"timezone": "UTC", "monday": ["22:00-06:00", "23:00-23:30"]})


def test_parse_schedule_reads_the_config_form_and_writes_it_back() -> None:
    config = {
        "timezone": "Europe/Berlin",
        "monday": ["13:00-17:00", "08:00-12:00"],
        "saturday": ["18:00-24:00"],
        "holidays": ["2026-12-25", "2026-12-24"],
        "mode": "on",
        "paused_until": "2026-03-09T10:30:00+01:00",
    }
    schedule = parse_schedule(config)
    assert schedule.weekdays[0].periods == (
        WorkPeriod(time(8), time(12)),
        WorkPeriod(time(13), time(17)),
    )
    assert set(schedule.weekdays) == {0, 5}
    assert schedule.holidays == {date(2026, 12, 24), date(2026, 12, 25)}
    assert schedule.mode == "on"
    assert schedule.paused_until == t(f"{MON} 10:30")
    written = schedule.to_dict()
    assert written["monday"] == ["08:00-12:00", "13:00-17:00"]
    assert written["saturday"] == ["18:00-24:00"]
    assert written["sunday"] == []
    assert parse_schedule(json.loads(json.dumps(written))) == schedule
    assert Schedule.from_dict(OFFICE.to_dict()) == OFFICE
    assert parse_schedule({"timezone": "UTC"}).mode == "automatic"


PARSE_ERRORS: list[tuple[dict[str, object], str]] = [
    ({}, r"schedule\.timezone: missing"),
    ({"timezone": "Mars/Olympus"}, r"schedule\.timezone: unknown time zone"),
    ({"timezone": 1}, r"schedule\.timezone"),
    ({"timezone": "UTC", "mondya": []}, r"schedule\.mondya: unknown key"),
    ({"timezone": "UTC", "monday": "08:00-12:00"}, r"schedule\.monday: must be a list"),
    ({"timezone": "UTC", "monday": ["08:00-12:00", "8-12"]}, r"schedule\.monday\[1\]: expected 'HH:MM-HH:MM'"),
    ({"timezone": "UTC", "tuesday": ["25:00-26:00"]}, r"schedule\.tuesday\[0\]: .* not a valid time range"),
    ({"timezone": "UTC", "friday": ["09:00-09:00"]}, r"schedule\.friday\[0\]: .*empty"),
    ({"timezone": "UTC", "wednesday": ["08:00-12:00", "11:00-13:00"]}, r"schedule\.wednesday: .*overlap"),
    ({"timezone": "UTC", "holidays": "2026-12-25"}, r"schedule\.holidays: must be a list"),
    ({"timezone": "UTC", "holidays": ["2026-12-25", "25.12.2026"]}, r"schedule\.holidays\[1\]"),
    ({"timezone": "UTC", "mode": "sometimes"}, r"schedule\.mode"),
    ({"timezone": "UTC", "paused_until": "2026-03-09 10:30"}, r"schedule\.paused_until: needs a UTC offset"),
    ({"timezone": "UTC", "paused_until": 5}, r"schedule\.paused_until"),
]


@pytest.mark.parametrize(("config", "message"), PARSE_ERRORS, ids=[m for _, m in PARSE_ERRORS])
def test_parse_schedule_errors_name_the_key(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(config)


# --- versioned rules -------------------------------------------------------------------------------------------

V1_FROM, V2_FROM, V3_FROM = t("2026-03-01 00:00"), t(f"{TUE} 09:00"), t(f"{THU} 00:00")
CHANGED = RuleHistory(
    [
        RuleSet(1, V1_FROM, OFFICE, AlertRules()),
        RuleSet(2, V2_FROM, EARLY, AlertRules()),  # from Tuesday 09:00 on, work starts at 07:00
        RuleSet(3, V3_FROM, replace(EARLY, mode="off"), AlertRules()),  # from Thursday on, the site is closed
    ]
)

IN_FORCE_CASES = [
    ("before the first version: the first", "2026-02-01 12:00", 1),
    ("first version", f"{MON} 10:00", 1),
    ("a moment before the change", "2026-03-10 08:59:59.999999", 1),
    ("exactly at the change", f"{TUE} 09:00", 2),
    ("between", f"{WED} 23:59", 2),
    ("latest", "2027-01-01 00:00", 3),
]


@pytest.mark.parametrize(("at", "version"), [c[1:] for c in IN_FORCE_CASES], ids=[c[0] for c in IN_FORCE_CASES])
def test_in_force(at: str, version: int) -> None:
    assert CHANGED.in_force(t(at)).version == version


def test_history_refuses_versions_that_do_not_move_forward() -> None:
    history = RuleHistory([RuleSet(1, V1_FROM, OFFICE, AlertRules())])
    with pytest.raises(ValueError, match="version 1 must be greater than 1"):
        history.add(RuleSet(1, V2_FROM, OFFICE, AlertRules()))
    with pytest.raises(ValueError, match="must be after"):
        history.add(RuleSet(2, V1_FROM, OFFICE, AlertRules()))
    with pytest.raises(ValueError, match="must be after"):
        history.add(RuleSet(2, V1_FROM - timedelta(days=1), OFFICE, AlertRules()))
    assert [r.version for r in history.versions] == [1]
    history.add(RuleSet(7, V2_FROM, EARLY, AlertRules()))
    assert history.latest.version == 7
    with pytest.raises(ValueError, match="must be greater"):
        RuleHistory([RuleSet(2, V1_FROM, OFFICE, AlertRules()), RuleSet(1, V2_FROM, OFFICE, AlertRules())])
    with pytest.raises(LookupError):
        RuleHistory().in_force(V1_FROM)
    with pytest.raises(ValueError, match="naive"):
        RuleSet(1, datetime(2026, 1, 1), OFFICE, AlertRules())


def test_history_round_trips_through_json() -> None:
    rules = AlertRules(absent=AbsentRule(after_min=45.0), workstation_idle=WorkstationIdleRule(enabled=True))
    history = RuleHistory(
        [
            RuleSet(1, V1_FROM, OFFICE, AlertRules()),
            RuleSet(2, V2_FROM, paused(replace(NIGHT, holidays={date(2026, 3, 9)}), f"{TUE} 12:00"), rules),
        ]
    )
    restored = RuleHistory.from_dict(json.loads(json.dumps(history.to_dict())))
    assert restored == history
    assert restored.in_force(t(f"{WED} 10:00")).rules.absent.after_min == 45.0
    with pytest.raises(ValueError, match=r"rule history\.versions\[0\]\.schedule\.timezone"):
        RuleHistory.from_dict(
            {
                "versions": [
                    {"version": 1, "valid_from": "2026-01-01T00:00:00+00:00", "schedule": {"timezone": "Nowhere/Land"}}
                ]
            }
        )
    with pytest.raises(ValueError, match=r"rule history\.versions\[0\]\.rules\.absent\.after_min"):
        RuleHistory.from_dict(
            {
                "versions": [
                    {
                        "version": 1,
                        "valid_from": "2026-01-01T00:00:00+00:00",
                        "schedule": {"timezone": "UTC"},
                        "rules": {"absent": {"after_min": -1}},
                    }
                ]
            }
        )


def test_work_time_between_follows_each_version() -> None:
    # Monday to Wednesday 08:00 under v1 (work from 08:00) then v2 (from 07:00 on, from Tuesday 09:00)
    total = CHANGED.work_time_between(t(f"{MON} 00:00"), t(f"{WED} 00:00"))
    assert total == timedelta(hours=8 + 8)  # Tuesday 07:00-08:00 was judged by v1: not work
    total = CHANGED.work_time_between(t(f"{MON} 00:00"), t(f"{THU} 00:00"))
    assert total == timedelta(hours=8 + 8 + 9)
    assert CHANGED.work_time_between(t(f"{THU} 00:00"), t(f"{THU} 23:00")) == timedelta(0)  # closed


# --- alert rule settings ---------------------------------------------------------------------------------------


def test_alert_rule_defaults() -> None:
    assert AlertRules().to_dict() == {
        "unknown_face": {"enabled": True, "severity": "warning", "only_during_work": False, "window_min": 10.0},
        "exit_during_work": {
            "enabled": True,
            "severity": "warning",
            "only_during_work": True,
            "resolve_on_return": True,
        },
        "absent": {"enabled": True, "severity": "warning", "only_during_work": True, "after_min": 30.0},
        "late_arrival": {"enabled": True, "severity": "info", "only_during_work": True, "grace_min": 10.0},
        "device_offline": {
            "enabled": True,
            "severity": "critical",
            "only_during_work": False,
            "after_s": 120.0,
            "include_stopped": False,
        },
        "device_silent": {"enabled": True, "severity": "warning", "only_during_work": False, "after_min": 30.0},
        "backlog": {
            "enabled": True,
            "severity": "warning",
            "only_during_work": False,
            "max_depth": 500,
            "max_oldest_unacked_s": 900.0,
        },
        "workstation_idle": {"enabled": False, "severity": "info", "only_during_work": True, "after_min": 15.0},
        "health": {
            "enabled": True,
            "severity": "warning",
            "only_during_work": False,
            "temperature_c_max": 80.0,
            "disk_free_mb_min": 500.0,
        },
        "forgotten_checkout": {"enabled": False, "severity": "info", "only_during_work": False, "at": "09:00"},
    }


def test_alert_rules_from_a_partial_config() -> None:
    rules = AlertRules.from_dict({"absent": {"after_min": 45}, "backlog": {"max_depth": 50, "severity": "critical"}})
    assert rules.absent == AbsentRule(after_min=45.0)
    assert rules.backlog == BacklogRule(max_depth=50, severity="critical")
    assert rules.unknown_face == UnknownFaceRule()
    assert AlertRules.from_dict(json.loads(json.dumps(rules.to_dict()))) == rules


RULE_ERRORS: list[tuple[dict[str, object], str]] = [
    ({"absnet": {}}, r"alerts\.absnet: unknown rule"),
    ({"absent": 30}, r"alerts\.absent: must be a table"),
    ({"absent": {"after_minutes": 30}}, r"alerts\.absent\.after_minutes: unknown setting"),
    ({"absent": {"after_min": 0}}, r"alerts\.absent\.after_min: must be a positive number"),
    ({"absent": {"after_min": True}}, r"alerts\.absent\.after_min"),
    ({"absent": {"severity": "loud"}}, r"alerts\.absent\.severity"),
    ({"backlog": {"max_depth": 1.5}}, r"alerts\.backlog\.max_depth: must be a whole number"),
    ({"health": {"enabled": "yes"}}, r"alerts\.health\.enabled: must be true or false"),
    ({"unknown_face": {"window_min": float("inf")}}, r"alerts\.unknown_face\.window_min"),
    ({"forgotten_checkout": {"at": "9:00"}}, r"alerts\.forgotten_checkout\.at: must be a time of day 'HH:MM'"),
    ({"forgotten_checkout": {"at": "24:00"}}, r"alerts\.forgotten_checkout\.at"),
    ({"forgotten_checkout": {"at": 9}}, r"alerts\.forgotten_checkout\.at"),
]


@pytest.mark.parametrize(("config", "message"), RULE_ERRORS, ids=[m for _, m in RULE_ERRORS])
def test_alert_rules_errors_name_the_key(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AlertRules.from_dict(config)


# --- event rules -----------------------------------------------------------------------------------------------

ONLY_AT_WORK = AlertRules(unknown_face=UnknownFaceRule(only_during_work=True))
NO_FACES = AlertRules(unknown_face=UnknownFaceRule(enabled=False))
EXIT_ANY_TIME = AlertRules(exit_during_work=ExitDuringWorkRule(only_during_work=False))
NO_EXITS = AlertRules(exit_during_work=ExitDuringWorkRule(enabled=False))
DOOR_FACE = ("unknown_face", "door-1")
ANN_EXIT = ("exit_during_work", "ann")


@dataclass(frozen=True)
class EventCase:
    name: str
    event: DoorEvent
    expected: list[tuple[str, str]]
    history: RuleHistory = field(default_factory=one_version)


EVENT_CASES = [
    EventCase("unknown face at work", seen(f"{MON} 10:00"), [DOOR_FACE]),
    EventCase("unknown face at night alerts too", seen(f"{MON} 23:00"), [DOOR_FACE]),
    EventCase("unknown face on a holiday alerts too", seen("2026-12-25 10:00"), [DOOR_FACE]),
    EventCase("unknown face at night, only_during_work", seen(f"{MON} 23:00"), [], one_version(rules=ONLY_AT_WORK)),
    EventCase(
        "unknown face at work, only_during_work", seen(f"{MON} 10:00"), [DOOR_FACE], one_version(rules=ONLY_AT_WORK)
    ),
    EventCase("unknown face, rule disabled", seen(f"{MON} 10:00"), [], one_version(rules=NO_FACES)),
    EventCase("unknown face while paused", seen(f"{MON} 10:00"), [], one_version(paused(OFFICE, f"{MON} 11:00"))),
    EventCase(
        "unknown face at an exit camera", seen(f"{MON} 10:00", "out-cam", role="exit"), [("unknown_face", "out-cam")]
    ),
    EventCase("unknown track ends: not counted", replace(seen(f"{MON} 10:00"), type="left"), []),
    EventCase("known face at an entrance", seen(f"{MON} 10:00", person="ann"), []),
    EventCase("exit during work", seen(f"{MON} 10:00", "out-cam", "ann", "exit"), [ANN_EXIT]),
    EventCase("exit at lunch", seen(f"{MON} 12:30", "out-cam", "ann", "exit"), []),
    EventCase("exit after work", seen(f"{MON} 17:00", "out-cam", "ann", "exit"), []),
    EventCase("exit on saturday", seen(f"{SAT} 10:00", "out-cam", "ann", "exit"), []),
    EventCase("exit on a holiday", seen("2026-12-25 10:00", "out-cam", "ann", "exit"), []),
    EventCase(
        "exit, manual on, saturday",
        seen(f"{SAT} 10:00", "out-cam", "ann", "exit"),
        [ANN_EXIT],
        one_version(replace(OFFICE, mode="on")),
    ),
    EventCase(
        "exit, manual off", seen(f"{MON} 10:00", "out-cam", "ann", "exit"), [], one_version(replace(OFFICE, mode="off"))
    ),
    EventCase(
        "exit while paused",
        seen(f"{MON} 10:00", "out-cam", "ann", "exit"),
        [],
        one_version(paused(OFFICE, f"{MON} 11:00")),
    ),
    EventCase(
        "exit after the pause",
        seen(f"{MON} 11:00", "out-cam", "ann", "exit"),
        [ANN_EXIT],
        one_version(paused(OFFICE, f"{MON} 11:00")),
    ),
    EventCase("a `both` camera never says out", seen(f"{MON} 10:00", "door", "ann", "both"), []),
    EventCase("exit track ends: not counted", replace(seen(f"{MON} 10:00", "out-cam", "ann", "exit"), type="left"), []),
    EventCase(
        "exit at night, not only_during_work",
        seen(f"{MON} 20:00", "out-cam", "ann", "exit"),
        [ANN_EXIT],
        one_version(rules=EXIT_ANY_TIME),
    ),
    EventCase("exit, rule disabled", seen(f"{MON} 10:00", "out-cam", "ann", "exit"), [], one_version(rules=NO_EXITS)),
]


@pytest.mark.parametrize("case", EVENT_CASES, ids=[c.name for c in EVENT_CASES])
def test_event_rules(case: EventCase) -> None:
    conditions = evaluate_event(case.event, case.history, case.event.at + timedelta(seconds=1))
    assert keys(conditions) == case.expected
    for condition in conditions:
        assert condition.active and condition.momentary
        assert condition.at == case.event.at
        assert condition.severity == "warning"
        assert condition.device == case.event.device
        assert condition.person_id == case.event.person_id
    if case.expected == [DOOR_FACE]:
        assert conditions[0].fold_window == timedelta(minutes=10)


LATE_CASES = [
    # name, event time, evaluated at, fires, version that judged it
    (
        "before the change, arriving after it: old rules, 07:30 was before work",
        f"{TUE} 07:30",
        f"{TUE} 10:00",
        False,
        1,
    ),
    ("the same event on time", f"{TUE} 07:30", "2026-03-10 07:30:05", False, 1),
    ("same wall time after the change: a violation", f"{WED} 07:30", f"{WED} 07:31", True, 2),
    ("before the change, in the old work time", f"{TUE} 08:30", f"{TUE} 11:00", True, 1),
    ("judged by v2 although it arrives after v3 closed the site", f"{WED} 10:00", f"{THU} 10:00", True, 2),
    ("under v3 the site is closed", f"{THU} 10:00", f"{THU} 10:01", False, 3),
]


@pytest.mark.parametrize(
    ("happened", "arrives", "fires", "version"), [c[1:] for c in LATE_CASES], ids=[c[0] for c in LATE_CASES]
)
def test_late_event_is_judged_by_the_rules_in_force_when_it_happened(
    happened: str, arrives: str, fires: bool, version: int
) -> None:
    event = seen(happened, "out-cam", "ann", "exit")
    assert CHANGED.in_force(event.at).version == version
    conditions = evaluate_event(event, CHANGED, t(arrives))
    assert keys(conditions) == ([ANN_EXIT] if fires else [])


def test_late_event_from_a_device_offline_when_rules_changed_goes_through_the_book() -> None:
    # v2 turned unknown-face alerts off from Tuesday 09:00; a door offline since Tuesday 08:00 sends a face from 08:30
    history = RuleHistory([RuleSet(1, V1_FROM, OFFICE, AlertRules()), RuleSet(2, V2_FROM, OFFICE, NO_FACES)])
    late = seen(f"{TUE} 08:30")
    conditions = evaluate_event(late, history, t(f"{TUE} 10:00"))
    assert keys(conditions) == [DOOR_FACE]
    assert "reported 90 min late" in conditions[0].message
    assert evaluate_event(seen(f"{TUE} 09:30"), history, t(f"{TUE} 10:00")) == []
    book = AlertBook()
    changes = book.apply(conditions, t(f"{TUE} 10:00"))
    # the face is from over a window ago: the alert is recorded and, its episode long over, resolved at once
    assert [c.kind for c in changes] == ["opened", "resolved"]
    alert = book.alerts()[0]
    assert (alert.first_at, alert.last_at, alert.state, alert.resolved_by) == (late.at, late.at, "resolved", None)


def test_door_event_from_a_wire_event() -> None:
    event = make_event(
        event_id="01M7YHSSVS0A533JN3YQJYX5XD",
        device="out-cam",
        seq=3,
        at=t(f"{MON} 10:00"),
        person_id="ann",
        score=0.7,
        track=1,
        quality=0.9,
        has_snapshot=True,
    )
    door = door_event(event, "exit")
    assert door == DoorEvent("01M7YHSSVS0A533JN3YQJYX5XD", "out-cam", "ann", t(f"{MON} 10:00"), "seen", "exit")
    assert keys(evaluate_event(door, one_version(), t(f"{MON} 10:00"))) == [ANN_EXIT]


# --- state rules -----------------------------------------------------------------------------------------------


def device(status: str | None = "online", since: str | None = None, **health: float | int | None) -> DeviceFacts:
    return DeviceFacts("door-1", status, t(since) if since else None, at=t(f"{MON} 09:59"), **health)  # type: ignore[arg-type]


def ann(state: str = "out", since: str | None = None, arrived: bool = True) -> PersonFacts:
    return PersonFacts("ann", state, t(since) if since else None, arrived)  # type: ignore[arg-type]


def ws(idle_since: str | None) -> WorkstationFacts:
    return WorkstationFacts("ws-1", t(idle_since) if idle_since else None, user="ann")


IDLE_ON = AlertRules(workstation_idle=WorkstationIdleRule(enabled=True))
OFFLINE = ("device_offline", "door-1")
BACKLOG = ("backlog", "door-1")
HOT = ("health", "door-1:temperature")
DISK = ("health", "door-1:disk")
ABSENT = ("absent", "ann")
LATE = ("late_arrival", "ann")
IDLE = ("workstation_idle", "ws-1")
PAUSED_FROM_0945 = RuleHistory(
    [
        RuleSet(1, EPOCH, OFFICE, AlertRules()),
        RuleSet(2, t(f"{MON} 09:45"), paused(OFFICE, f"{MON} 10:30"), AlertRules()),
    ]
)


@dataclass(frozen=True)
class StateCase:
    name: str
    key: tuple[str, str]
    expect: bool | None  # True: fires; False: clears; None: nothing said (gated, or figure unknown)
    now: str = f"{MON} 10:00"
    devices: tuple[DeviceFacts, ...] = ()
    people: tuple[PersonFacts, ...] = ()
    workstations: tuple[WorkstationFacts, ...] = ()
    expected: frozenset[str] = frozenset()
    history: RuleHistory = field(default_factory=one_version)


STATE_CASES = [
    # device offline (from the last will)
    StateCase("offline 120 s", OFFLINE, True, devices=(device("offline", "2026-03-09 09:58"),)),
    StateCase("offline 119 s", OFFLINE, False, devices=(device("offline", "2026-03-09 09:58:01"),)),
    StateCase("online", OFFLINE, False, devices=(device("online", "2026-03-09 08:00"),)),
    StateCase("never reported", OFFLINE, False, devices=(device(None),)),
    StateCase("stopped cleanly", OFFLINE, False, devices=(device("stopped", "2026-03-09 09:00"),)),
    StateCase(
        "stopped, include_stopped",
        OFFLINE,
        True,
        devices=(device("stopped", "2026-03-09 09:00"),),
        history=one_version(rules=AlertRules(device_offline=DeviceOfflineRule(include_stopped=True))),
    ),
    StateCase(
        "offline at night alerts too", OFFLINE, True, now=f"{SAT} 03:00", devices=(device("offline", f"{SAT} 02:00"),)
    ),
    StateCase(
        "offline while paused",
        OFFLINE,
        None,
        devices=(device("offline", "2026-03-09 09:00"),),
        history=one_version(paused(OFFICE, f"{MON} 11:00")),
    ),
    StateCase(
        "offline, longer threshold",
        OFFLINE,
        False,
        devices=(device("offline", "2026-03-09 09:58"),),
        history=one_version(rules=AlertRules(device_offline=DeviceOfflineRule(after_s=600))),
    ),
    StateCase(
        "offline, rule disabled",
        OFFLINE,
        False,
        devices=(device("offline", "2026-03-09 09:00"),),
        history=one_version(rules=AlertRules(device_offline=DeviceOfflineRule(enabled=False))),
    ),
    # outbox backlog
    StateCase("outbox 501 deep", BACKLOG, True, devices=(device(outbox_depth=501, oldest_unacked_s=5),)),
    StateCase("outbox 500 deep", BACKLOG, False, devices=(device(outbox_depth=500, oldest_unacked_s=5),)),
    StateCase("oldest unacked 901 s", BACKLOG, True, devices=(device(outbox_depth=3, oldest_unacked_s=901),)),
    StateCase("oldest unacked 900 s", BACKLOG, False, devices=(device(outbox_depth=3, oldest_unacked_s=900),)),
    StateCase("outbox unknown", BACKLOG, None, devices=(device(),)),
    StateCase("backlog at night alerts too", BACKLOG, True, now=f"{SUN} 03:00", devices=(device(outbox_depth=900),)),
    StateCase(
        "backlog, rule disabled",
        BACKLOG,
        False,
        devices=(device(outbox_depth=900),),
        history=one_version(rules=AlertRules(backlog=BacklogRule(enabled=False))),
    ),
    # health
    StateCase("80.5 °C", HOT, True, devices=(device(temperature_c=80.5),)),
    StateCase("80.0 °C", HOT, False, devices=(device(temperature_c=80.0),)),
    StateCase("temperature unknown", HOT, None, devices=(device(disk_free_mb=100),)),
    StateCase(
        "65 °C over a lower limit",
        HOT,
        True,
        devices=(device(temperature_c=65.0),),
        history=one_version(rules=AlertRules(health=HealthRule(temperature_c_max=60.0))),
    ),
    StateCase("499 MB free", DISK, True, devices=(device(disk_free_mb=499),)),
    StateCase("500 MB free", DISK, False, devices=(device(disk_free_mb=500),)),
    StateCase("disk unknown", DISK, None, devices=(device(temperature_c=50.0),)),
    # absent (arrived today, out again for N minutes of work time)
    StateCase("out 30 min", ABSENT, True, people=(ann("out", f"{MON} 09:30"),)),
    StateCase("out 29 min", ABSENT, False, people=(ann("out", f"{MON} 09:31"),)),
    StateCase("back in", ABSENT, False, people=(ann("in", f"{MON} 09:50"),)),
    StateCase("out since yesterday, not arrived today", ABSENT, False, people=(ann("out", f"{SUN} 17:00", False),)),
    StateCase("never seen", ABSENT, False, people=(PersonFacts("ann", "unknown", None, False),)),
    StateCase(
        "lunch does not count: 10 + 15 min", ABSENT, False, now=f"{MON} 13:15", people=(ann("out", f"{MON} 11:50"),)
    ),
    StateCase(
        "lunch does not count: 10 + 20 min", ABSENT, True, now=f"{MON} 13:20", people=(ann("out", f"{MON} 11:50"),)
    ),
    StateCase("after work: gated", ABSENT, None, now=f"{MON} 17:30", people=(ann("out", f"{MON} 16:00"),)),
    StateCase(
        "left 10 min before the end of work", ABSENT, False, now=f"{MON} 17:30", people=(ann("out", f"{MON} 16:50"),)
    ),
    StateCase(
        "wall-clock minutes when not only_during_work",
        ABSENT,
        True,
        now=f"{MON} 17:30",
        people=(ann("out", f"{MON} 17:00"),),
        history=one_version(rules=AlertRules(absent=AbsentRule(only_during_work=False))),
    ),
    StateCase(
        "pause: gated", ABSENT, None, now=f"{MON} 10:20", people=(ann("out", f"{MON} 09:00"),), history=PAUSED_FROM_0945
    ),
    StateCase(
        "pause time does not count: 45 + 9 min",
        ABSENT,
        True,
        now=f"{MON} 10:39",
        people=(ann("out", f"{MON} 09:00"),),
        history=PAUSED_FROM_0945,
    ),
    StateCase(
        "absent, rule disabled",
        ABSENT,
        False,
        people=(ann("out", f"{MON} 08:30"),),
        history=one_version(rules=AlertRules(absent=AbsentRule(enabled=False))),
    ),
    # late arrival (expected people, work start + grace, work days)
    StateCase(
        "not arrived at 08:10",
        LATE,
        True,
        now=f"{MON} 08:10",
        people=(ann(arrived=False),),
        expected=frozenset({"ann"}),
    ),
    StateCase(
        "not arrived at 08:09",
        LATE,
        False,
        now=f"{MON} 08:09",
        people=(ann(arrived=False),),
        expected=frozenset({"ann"}),
    ),
    StateCase(
        "arrived", LATE, False, now=f"{MON} 10:00", people=(ann("out", f"{MON} 09:59"),), expected=frozenset({"ann"})
    ),
    StateCase(
        "in (came before the day began)",
        LATE,
        False,
        people=(ann("in", f"{MON} 03:00", False),),
        expected=frozenset({"ann"}),
    ),
    StateCase("not expected", LATE, False, people=(ann(arrived=False),)),
    StateCase("expected, never seen at all", LATE, True, expected=frozenset({"ann"})),
    StateCase("saturday", LATE, False, now=f"{SAT} 10:00", expected=frozenset({"ann"})),
    StateCase("holiday", LATE, False, now="2026-12-25 10:00", expected=frozenset({"ann"})),
    StateCase("lunch break: gated", LATE, None, now=f"{MON} 12:30", expected=frozenset({"ann"})),
    StateCase(
        "manual off: gated", LATE, None, expected=frozenset({"ann"}), history=one_version(replace(OFFICE, mode="off"))
    ),
    StateCase(
        "work starts earlier under the rules in force",
        LATE,
        True,
        now=f"{WED} 07:10",
        expected=frozenset({"ann"}),
        history=CHANGED,
    ),
    StateCase(
        "longer grace",
        LATE,
        False,
        now=f"{MON} 08:20",
        expected=frozenset({"ann"}),
        history=one_version(rules=AlertRules(late_arrival=LateArrivalRule(grace_min=30))),
    ),
    # workstation idle (opt-in)
    StateCase("idle rule off by default", IDLE, False, workstations=(ws(f"{MON} 08:00"),)),
    StateCase("idle 20 min", IDLE, True, workstations=(ws(f"{MON} 09:40"),), history=one_version(rules=IDLE_ON)),
    StateCase("idle 10 min", IDLE, False, workstations=(ws(f"{MON} 09:50"),), history=one_version(rules=IDLE_ON)),
    StateCase("active", IDLE, False, workstations=(ws(None),), history=one_version(rules=IDLE_ON)),
    StateCase(
        "idle over lunch: 10 + 10 min",
        IDLE,
        True,
        now=f"{MON} 13:10",
        workstations=(ws(f"{MON} 11:50"),),
        history=one_version(rules=IDLE_ON),
    ),
    StateCase(
        "idle over lunch: 5 + 5 min",
        IDLE,
        False,
        now=f"{MON} 13:05",
        workstations=(ws(f"{MON} 11:55"),),
        history=one_version(rules=IDLE_ON),
    ),
    StateCase(
        "idle after work: gated",
        IDLE,
        None,
        now=f"{MON} 17:30",
        workstations=(ws(f"{MON} 16:00"),),
        history=one_version(rules=IDLE_ON),
    ),
    # exit during work: only cleared here (it fires on events)
    StateCase("exit alert clears when back in", ANN_EXIT, False, people=(ann("in", f"{MON} 09:50"),)),
    StateCase("exit alert stays while out", ANN_EXIT, None, people=(ann("out", f"{MON} 09:50"),)),
    StateCase(
        "exit alert stays without resolve_on_return",
        ANN_EXIT,
        None,
        people=(ann("in", f"{MON} 09:50"),),
        history=one_version(rules=AlertRules(exit_during_work=ExitDuringWorkRule(resolve_on_return=False))),
    ),
    StateCase(
        "exit rule disabled clears",
        ANN_EXIT,
        False,
        people=(ann("out", f"{MON} 09:50"),),
        history=one_version(rules=NO_EXITS),
    ),
]


@pytest.mark.parametrize("case", STATE_CASES, ids=[c.name for c in STATE_CASES])
def test_state_rules(case: StateCase) -> None:
    now = t(case.now)
    conditions = evaluate_state(case.devices, case.people, case.workstations, case.history, now, case.expected)
    assert state_of(conditions, case.key) is case.expect
    assert all(c.at == now and not c.momentary for c in conditions)
    if case.expect:
        condition = next(c for c in conditions if c.key == case.key)
        rule = getattr(case.history.in_force(now).rules, case.key[0])
        assert (condition.rule, condition.severity) == (case.key[0], rule.severity)


def test_state_messages_say_what_and_since_when() -> None:
    now = t(f"{MON} 10:00")
    conditions = evaluate_state(
        [device("offline", f"{MON} 09:50", outbox_depth=812, temperature_c=85.0)],
        [ann("out", f"{MON} 09:15")],
        [ws(f"{MON} 09:30")],
        one_version(rules=IDLE_ON),
        now,
        {"ann", "bob"},
    )
    messages = {c.key: c.message for c in conditions if c.active}
    assert messages[OFFLINE] == "door-1 offline since 2026-03-09 09:50 (10 min)"
    assert messages[BACKLOG] == "door-1: outbox holds 812 events (limit 500)"
    assert messages[HOT] == "door-1 temperature 85.0 °C (max 80.0 °C)"
    assert messages[ABSENT] == "ann away 45 min of work time (out since 2026-03-09 09:15)"
    assert messages[IDLE] == "ws-1 (ann) idle 30 min of work time (since 2026-03-09 09:30)"
    assert messages[("late_arrival", "bob")] == "bob not arrived by 2026-03-09 08:10 (work start + 10 min grace)"
    assert LATE not in messages  # ann arrived today


# --- the alert book: each rule fires and clears ---------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    devices: tuple[DeviceFacts, ...] = ()
    people: tuple[PersonFacts, ...] = ()
    workstations: tuple[WorkstationFacts, ...] = ()
    expected: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Lifecycle:
    name: str
    key: tuple[str, str]
    firing: Facts
    clearing: Facts
    rules: AlertRules = field(default_factory=AlertRules)


LIFECYCLES = [
    Lifecycle(
        "device back online resolves device_offline",
        OFFLINE,
        Facts(devices=(device("offline", f"{MON} 09:50"),)),
        Facts(devices=(device("online", f"{MON} 10:00"),)),
    ),
    Lifecycle(
        "outbox drained resolves backlog",
        BACKLOG,
        Facts(devices=(device(outbox_depth=900),)),
        Facts(devices=(device(outbox_depth=0),)),
    ),
    Lifecycle(
        "cooled down resolves health",
        HOT,
        Facts(devices=(device(temperature_c=90.0),)),
        Facts(devices=(device(temperature_c=60.0),)),
    ),
    Lifecycle(
        "disk freed resolves health",
        DISK,
        Facts(devices=(device(disk_free_mb=10),)),
        Facts(devices=(device(disk_free_mb=4000),)),
    ),
    Lifecycle(
        "person back in resolves absent",
        ABSENT,
        Facts(people=(ann("out", f"{MON} 09:00"),)),
        Facts(people=(ann("in", f"{MON} 10:00"),)),
    ),
    Lifecycle(
        "a new day resolves absent",
        ABSENT,
        Facts(people=(ann("out", f"{MON} 09:00"),)),
        Facts(people=(ann("out", f"{MON} 09:00", arrived=False),)),
    ),
    Lifecycle(
        "arrival resolves late_arrival",
        LATE,
        Facts(people=(ann(arrived=False),), expected=frozenset({"ann"})),
        Facts(people=(ann("in", f"{MON} 10:00"),), expected=frozenset({"ann"})),
    ),
    Lifecycle(
        "activity resolves workstation_idle",
        IDLE,
        Facts(workstations=(ws(f"{MON} 09:00"),)),
        Facts(workstations=(ws(None),)),
        IDLE_ON,
    ),
]


def _state(history: RuleHistory, now: datetime, facts: Facts) -> list[Condition]:
    return evaluate_state(facts.devices, facts.people, facts.workstations, history, now, facts.expected)


@pytest.mark.parametrize("case", LIFECYCLES, ids=[c.name for c in LIFECYCLES])
def test_state_rule_fires_and_resolves_itself(case: Lifecycle) -> None:
    history = one_version(rules=case.rules)
    book = AlertBook()
    opened = book.apply(_state(history, t(f"{MON} 10:00"), case.firing), t(f"{MON} 10:00"))
    assert [(c.kind, c.alert.key) for c in opened] == [("opened", case.key)]
    # the condition goes on: every tick says so again, and nothing changes (no count, no publish)
    for minute in range(1, 6):
        now = t(f"{MON} 10:00") + timedelta(minutes=minute)
        assert book.apply(_state(history, now, case.firing), now) == []
    assert book.get(opened[0].alert.alert_id).count == 1
    now = t(f"{MON} 10:06")
    resolved = book.apply(_state(history, now, case.clearing), now)
    assert [(c.kind, c.alert.key, c.alert.state) for c in resolved] == [("resolved", case.key, "resolved")]
    assert (resolved[0].alert.resolved_at, resolved[0].alert.resolved_by) == (now, None)
    assert book.open_alerts() == []


def test_exit_during_work_fires_folds_and_resolves_when_the_person_is_back() -> None:
    history, book = one_version(), AlertBook()
    for local in (f"{MON} 10:00", f"{MON} 10:20"):
        book.apply(evaluate_event(seen(local, "out-cam", "ann", "exit"), history, t(local)), t(local))
    (alert,) = book.open_alerts()
    assert (alert.rule, alert.count, alert.first_at, alert.last_at) == (
        "exit_during_work",
        2,
        t(f"{MON} 10:00"),
        t(f"{MON} 10:20"),
    )
    assert (alert.person_id, alert.device, alert.severity) == ("ann", "out-cam", "warning")
    now = t(f"{MON} 10:30")
    assert book.apply(_state(history, now, Facts(people=(ann("out", f"{MON} 10:20"),))), now) == []  # still out
    changes = book.apply(_state(history, now, Facts(people=(ann("in", f"{MON} 10:58"),))), now)
    assert [(c.kind, c.alert.alert_id) for c in changes] == [("resolved", alert.alert_id)]


# --- the alert book: folding, rate limit, states -------------------------------------------------------------


def faces(book: AlertBook, door: str, start: str, every: timedelta, count: int) -> list[AlertChange]:
    """``count`` unknown faces at ``door``, one every ``every`` from ``start``, each applied when it happens."""
    history, changes = one_version(), []
    for i in range(count):
        at = t(start) + every * i
        event = DoorEvent(f"{door}-{at.isoformat()}", door, None, at, "seen", "entrance")
        changes += book.apply(evaluate_event(event, history, at), at)
    return changes


def test_ten_unknown_faces_in_five_minutes_are_one_alert_per_door() -> None:
    book = AlertBook()
    changes = faces(book, "door-1", f"{MON} 10:00", timedelta(seconds=30), 10)
    faces(book, "door-2", f"{MON} 10:02", timedelta(seconds=30), 3)
    assert [c.kind for c in changes] == ["opened"] + ["folded"] * 9
    door1, door2 = book.open_alerts()
    assert (door1.key, door1.count, door1.first_at, door1.last_at) == (
        DOOR_FACE,
        10,
        t(f"{MON} 10:00"),
        t("2026-03-09 10:04:30"),
    )
    assert (door2.key, door2.count, door2.device) == (("unknown_face", "door-2"), 3, "door-2")
    assert door1.alert_id != door2.alert_id
    assert len({c.alert.alert_id for c in changes}) == 1


def test_a_late_occurrence_folds_into_the_live_episode_and_widens_it() -> None:
    book = AlertBook()
    faces(book, "door-1", f"{MON} 10:00", timedelta(minutes=1), 2)
    history, late = one_version(), seen(f"{MON} 09:55")  # resent after a reconnect, older than the episode
    changes = book.apply(evaluate_event(late, history, t(f"{MON} 10:02")), t(f"{MON} 10:02"))
    assert [c.kind for c in changes] == ["folded"]
    (alert,) = book.alerts()
    assert (alert.count, alert.first_at, alert.last_at) == (3, t(f"{MON} 09:55"), t(f"{MON} 10:01"))


def test_rate_limit_one_new_alert_per_door_per_window() -> None:
    book = AlertBook()
    # a face every 8 minutes: each within the 10-minute window of the last, so one alert however long it goes on
    faces(book, "door-1", f"{MON} 10:00", timedelta(minutes=8), 6)
    (first,) = book.alerts()
    assert (first.count, first.state, first.last_at) == (6, "open", t(f"{MON} 10:40"))
    # 10 quiet minutes: the episode is over and the alert resolves itself
    assert book.apply([], t("2026-03-09 10:49:59")) == []
    changes = book.apply([], t(f"{MON} 10:50"))
    assert [(c.kind, c.alert.alert_id) for c in changes] == [("resolved", first.alert_id)]
    # the next face opens a new alert
    faces(book, "door-1", f"{MON} 11:00", timedelta(minutes=1), 1)
    assert [(a.count, a.state) for a in book.alerts()] == [(6, "resolved"), (1, "open")]


def test_the_book_forgets_resolved_alerts_after_a_week_and_beyond_the_newest_500() -> None:
    book = AlertBook()
    # an unknown face every 20 minutes for 12 days: each episode (10-minute window) resolves before the next
    faces(book, "door-1", f"{MON} 00:00", timedelta(minutes=20), 12 * 72)
    kept = book.alerts()
    resolved = [a for a in kept if a.state == "resolved"]
    assert len(resolved) == RESOLVED_KEPT_MAX  # 863 resolved ones happened; the book stays the same size
    newest = max(a.last_at for a in kept)
    assert min(a.resolved_at or a.last_at for a in resolved) >= newest - RESOLVED_KEPT_FOR
    assert [a.state for a in kept].count("open") == 1  # the live one is never dropped
    # a quiet week later every finished one is gone, and the last one resolves and stays until its week is up
    later = newest + RESOLVED_KEPT_FOR + timedelta(hours=1)
    book.apply([], later)
    assert [a.state for a in book.alerts()] == ["resolved"]


def test_acknowledged_alerts_are_never_forgotten() -> None:
    book = AlertBook()
    faces(book, "door-1", f"{MON} 10:00", timedelta(minutes=1), 1)
    (alert,) = book.alerts()
    book.acknowledge(alert.alert_id, "vera", t(f"{MON} 10:01"))
    assert book.forget_old(t(f"{MON} 10:01") + timedelta(days=30)) == 0
    assert [a.alert_id for a in book.alerts()] == [alert.alert_id]


def test_rate_limit_also_holds_after_a_manual_resolve() -> None:
    book = AlertBook()
    faces(book, "door-1", f"{MON} 10:00", timedelta(minutes=1), 2)
    (alert,) = book.alerts()
    change = book.resolve(alert.alert_id, "sam", t(f"{MON} 10:02"))
    assert change is not None and change.alert.state == "resolved" and change.alert.resolved_by == "sam"
    # the same visitor lingers: faces within the window fold into the resolved alert, nobody is paged again
    changes = faces(book, "door-1", f"{MON} 10:05", timedelta(minutes=5), 3)
    assert [(c.kind, c.alert.state) for c in changes] == [("folded", "resolved")] * 3
    (alert,) = book.alerts()
    assert (alert.count, alert.state, alert.resolved_by) == (5, "resolved", "sam")
    # after a quiet window, a face is a new episode and a new alert
    changes = faces(book, "door-1", f"{MON} 10:26", timedelta(minutes=1), 1)
    assert [c.kind for c in changes] == ["opened"]
    assert len(book.alerts()) == 2


def test_acknowledged_alerts_keep_counting() -> None:
    book = AlertBook()
    faces(book, "door-1", f"{MON} 10:00", timedelta(minutes=1), 2)
    (alert,) = book.alerts()
    change = book.acknowledge(alert.alert_id, "sam", t(f"{MON} 10:02"))
    assert change is not None
    assert (change.kind, change.alert.state, change.alert.acknowledged_by) == ("acknowledged", "acknowledged", "sam")
    assert book.acknowledge(alert.alert_id, "kim", t(f"{MON} 10:03")) is None  # already taken on
    changes = faces(book, "door-1", f"{MON} 10:03", timedelta(minutes=1), 3)
    assert [(c.kind, c.alert.state) for c in changes] == [("folded", "acknowledged")] * 3
    (alert,) = book.open_alerts()
    assert (alert.count, alert.state, alert.acknowledged_by, alert.last_at) == (
        5,
        "acknowledged",
        "sam",
        t(f"{MON} 10:05"),
    )
    # an acknowledged alert still resolves itself when its condition clears
    assert [c.kind for c in book.apply([], t(f"{MON} 10:15"))] == ["resolved"]
    with pytest.raises(ValueError, match="already resolved"):
        book.acknowledge(alert.alert_id, "sam", t(f"{MON} 10:16"))
    with pytest.raises(KeyError):
        book.acknowledge("01M7YHSSVS0A533JN3YQJYX5XD", "sam", t(f"{MON} 10:16"))


def test_resolved_alert_whose_condition_fires_again_opens_a_new_alert() -> None:
    history, book = one_version(), AlertBook()
    down = Facts(devices=(device("offline", f"{MON} 09:50"),))
    up = Facts(devices=(device("online", f"{MON} 10:05"),))
    first = book.apply(_state(history, t(f"{MON} 10:00"), down), t(f"{MON} 10:00"))[0].alert
    book.apply(_state(history, t(f"{MON} 10:05"), up), t(f"{MON} 10:05"))
    down_again = Facts(devices=(device("offline", f"{MON} 10:10"),))
    changes = book.apply(_state(history, t(f"{MON} 10:12"), down_again), t(f"{MON} 10:12"))
    assert [c.kind for c in changes] == ["opened"]
    second = changes[0].alert
    assert second.alert_id != first.alert_id
    assert (second.first_at, second.count, second.state) == (t(f"{MON} 10:12"), 1, "open")
    assert book.get(first.alert_id).state == "resolved"
    assert [a.alert_id for a in book.open_alerts()] == [second.alert_id]


def test_manual_resolve_of_a_lasting_condition_holds_until_it_clears() -> None:
    history, book = one_version(), AlertBook()
    down = Facts(devices=(device("offline", f"{MON} 09:50"),))
    (opened,) = book.apply(_state(history, t(f"{MON} 10:00"), down), t(f"{MON} 10:00"))
    book.resolve(opened.alert.alert_id, "sam", t(f"{MON} 10:01"))
    assert book.resolve(opened.alert.alert_id, "sam", t(f"{MON} 10:01")) is None
    # still offline: the supervisor has handled this episode; no new alert
    assert book.apply(_state(history, t(f"{MON} 10:02"), down), t(f"{MON} 10:02")) == []
    # back online (nothing to publish: already resolved), then offline again: a new alert
    assert (
        book.apply(
            _state(history, t(f"{MON} 10:03"), Facts(devices=(device("online", f"{MON} 10:03"),))), t(f"{MON} 10:03")
        )
        == []
    )
    changes = book.apply(
        _state(history, t(f"{MON} 10:10"), Facts(devices=(device("offline", f"{MON} 10:04"),))), t(f"{MON} 10:10")
    )
    assert [c.kind for c in changes] == ["opened"]
    assert len(book.alerts()) == 2


def test_alert_ids_are_ulids_from_now() -> None:
    book = AlertBook()
    now = t("2026-03-09 10:00:01.234")
    (change,) = book.apply([Condition("health", ("health", "x"), "info", "x", "m", now)], now)
    assert ULID.from_str(change.alert.alert_id).datetime == now


def test_book_round_trips_through_json_and_goes_on() -> None:
    book = AlertBook()
    faces(book, "door-1", f"{MON} 10:00", timedelta(minutes=1), 3)
    history = one_version()
    book.apply(
        _state(history, t(f"{MON} 10:03"), Facts(devices=(device("offline", f"{MON} 09:50"),))), t(f"{MON} 10:03")
    )
    book.acknowledge(book.alerts()[1].alert_id, "sam", t(f"{MON} 10:04"))
    restored = AlertBook.from_dict(json.loads(json.dumps(book.to_dict())))
    assert restored.alerts() == book.alerts()
    changes = faces(restored, "door-1", f"{MON} 10:05", timedelta(minutes=1), 1)
    assert [(c.kind, c.alert.count) for c in changes] == [("folded", 4)]
    assert (
        book.apply(
            _state(history, t(f"{MON} 10:06"), Facts(devices=(device("offline", f"{MON} 09:50"),))), t(f"{MON} 10:06")
        )
        == []
    )
    with pytest.raises(ValueError, match="alert record"):
        AlertBook.from_dict({"alerts": [{**book.alerts()[0].to_dict(), "count": 0}]})


def test_prune_forgets_old_resolved_alerts_only() -> None:
    book = AlertBook()
    faces(book, "door-1", f"{MON} 10:00", timedelta(minutes=1), 1)
    faces(book, "door-1", f"{MON} 11:00", timedelta(minutes=1), 1)  # the first resolved itself at 11:00
    faces(book, "door-2", f"{MON} 11:00", timedelta(minutes=1), 1)
    assert book.prune(t(f"{MON} 10:59")) == 0
    assert book.prune(t(f"{MON} 11:01")) == 1
    assert [(a.device, a.first_at) for a in book.alerts()] == [
        ("door-1", t(f"{MON} 11:00")),
        ("door-2", t(f"{MON} 11:00")),
    ]


@pytest.mark.parametrize("state", ["open", "acknowledged", "resolved"])
def test_to_wire_passes_the_wire_contract(state: str) -> None:
    book = AlertBook()
    faces(book, "door-1", f"{MON} 10:00", timedelta(seconds=30), 4)
    (alert,) = book.alerts()
    if state == "acknowledged":
        book.acknowledge(alert.alert_id, "sam", t(f"{MON} 10:03"))
    elif state == "resolved":
        book.resolve(alert.alert_id, "sam", t(f"{MON} 10:03"))
    alert = book.get(alert.alert_id)
    payload = book.to_wire(alert)
    topic = TOPICS.hub_alert()
    assert topic == "rollcall/hq/hub/alert"
    ref, decoded = wire.decode(topic, wire.encode(payload))
    assert ref.leaf == "alert"
    assert isinstance(decoded, wire.Alert)
    assert decoded == to_wire(alert)
    assert (decoded.alert_id, decoded.rule, decoded.state, decoded.count) == (alert.alert_id, "unknown_face", state, 4)
    assert (decoded.first_at, decoded.last_at) == (t(f"{MON} 10:00"), t("2026-03-09 10:01:30"))
    assert decoded.device == "door-1" and decoded.person_id is None and decoded.severity == "warning"
    assert decoded.acknowledged_by == ("sam" if state == "acknowledged" else None)


def test_to_wire_cuts_long_text_to_the_contract() -> None:
    now = t(f"{MON} 10:00")
    record = AlertRecord(
        str(ULID.from_datetime(now)),
        "health",
        ("health", "x"),
        "info",
        "s" * 300,
        "m" * 3000,
        "open",
        now,
        now,
        1,
        None,
        "ann",
        False,
        None,
        True,
    )
    _, decoded = wire.decode(TOPICS.hub_alert(), wire.encode(to_wire(record)))
    assert isinstance(decoded, wire.Alert)
    assert len(decoded.subject) == 256 and len(decoded.message) == 2000 and decoded.person_id == "ann"


def test_conditions_and_facts_refuse_bad_values() -> None:
    now = t(f"{MON} 10:00")
    with pytest.raises(ValueError, match="naive"):
        Condition("health", ("health", "x"), "info", "x", "m", datetime(2026, 3, 9, 10))
    with pytest.raises(ValueError, match="key"):
        Condition("health", ("absent", "x"), "info", "x", "m", now)
    with pytest.raises(ValueError, match="severity"):
        Condition("health", ("health", "x"), "loud", "x", "m", now)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device id"):
        Condition("health", ("health", "x"), "info", "x", "m", now, device="has space")
    with pytest.raises(ValueError, match="role"):
        DoorEvent("e", "door-1", None, now, "seen", "window")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="naive"):
        AlertBook().apply([], datetime(2026, 3, 9, 10))
    with pytest.raises(ValueError, match="non-empty"):
        book = AlertBook()
        faces(book, "door-1", f"{MON} 10:00", timedelta(minutes=1), 1)
        book.resolve(book.alerts()[0].alert_id, " ", now)
