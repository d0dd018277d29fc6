"""Presence and attendance from door sightings: table-driven cases with controlled time in Europe/Berlin."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from hub.domain.attendance import (
    AttendanceDay,
    AttendanceRules,
    compute_days,
    day_bounds,
    day_is_final,
    day_status,
    local_day,
)
from hub.domain.presence import (
    PresenceRules,
    PresenceState,
    Role,
    Sighting,
    SightingType,
    apply_sighting,
    expire,
    next_expiry,
    sighting_from_event,
)
from tests.helpers.factories import make_event

BERLIN = ZoneInfo("Europe/Berlin")
MON, TUE, WED = "2024-03-04", "2024-03-05", "2024-03-06"  # ordinary CET days (UTC+1)
RULES = AttendanceRules(timezone="Europe/Berlin")
NIGHT_SITE = AttendanceRules(timezone="Europe/Berlin", day_starts_at=time(12, 0))
TWO_CAMERAS: dict[str, Role] = {"in-cam": "entrance", "out-cam": "exit"}
ONE_CAMERA: dict[str, Role] = {"door": "both"}
MIXED: dict[str, Role] = {"in-cam": "entrance", "out-cam": "exit", "side": "both"}
TRACK = timedelta(seconds=10)  # a passage is a `seen` (with snapshot) and, 10 s later, a `left` (without)


def t(local: str) -> datetime:
    """A Berlin wall time ('2024-03-04 08:00'), or one with an explicit offset for DST folds, as UTC."""
    parsed = datetime.fromisoformat(local)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=BERLIN)
    return parsed.astimezone(UTC)


def eid(local: str, device: str, kind: SightingType = "seen", person: str = "ann") -> str:
    """The event id the helpers give a sighting (readable, so expectations can name it)."""
    return f"{person}|{device}|{local}|{kind}"


def s(local: str, device: str, kind: SightingType = "seen", person: str = "ann", snap: bool | None = None) -> Sighting:
    """One sighting; like the edge, only `seen` events carry a snapshot unless ``snap`` says otherwise."""
    has_snapshot = kind == "seen" if snap is None else snap
    return Sighting(eid(local, device, kind, person), device, person, t(local), kind, has_snapshot)


def left_local(local: str) -> str:
    """The wall time (with offset) of the `left` event that ends a passage starting at ``local``."""
    return (t(local) + TRACK).astimezone(BERLIN).isoformat(sep=" ")


def passage(local: str, device: str, person: str = "ann") -> list[Sighting]:
    """A person passing a door: `seen` at ``local`` and `left` when the track ends."""
    return [s(local, device, "seen", person), s(left_local(local), device, "left", person)]


def through(when: str, devices: dict[str, Role]) -> dict[str, datetime]:
    """Every device has delivered everything up to ``when``."""
    return {device: t(when) for device in devices}


# --- attendance ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One attendance case: the sightings the hub holds, what it knows of delivery, and the days it must derive."""

    id: str
    sightings: list[Sighting]
    roles: dict[str, Role]
    now: datetime
    delivered: dict[str, datetime]
    expected: list[AttendanceDay]
    rules: AttendanceRules = RULES


def ann(
    day: str,
    *,
    first_in: str | None,
    first_in_event: str | None,
    last_out: datetime | None,
    last_out_event: str | None,
    minutes: int,
    settled: bool,
    final: bool,
    sightings: int,
    forgot: bool = False,
    person: str = "ann",
) -> AttendanceDay:
    """An expected day (``first_in`` as a Berlin wall time, ``last_out`` as an instant)."""
    return AttendanceDay(
        person_id=person,
        day=date.fromisoformat(day),
        first_in=t(first_in) if first_in else None,
        first_in_event=first_in_event,
        last_out=last_out,
        last_out_event=last_out_event,
        minutes_on_site=minutes,
        out_settled=settled,
        final=final,
        sightings=sightings,
        forgot_checkout=forgot,
    )


_CYCLES = [
    *passage(f"{MON} 08:00", "in-cam"),
    *passage(f"{MON} 12:00", "out-cam"),
    *passage(f"{MON} 12:45", "in-cam"),
    *passage(f"{MON} 17:00", "out-cam"),
]
_LUNCH = [*passage(f"{MON} 08:00", "in-cam"), *passage(f"{MON} 12:00", "out-cam")]
_FORGOT = [
    *passage(f"{MON} 08:00", "in-cam"),
    *passage(f"{MON} 12:00", "out-cam"),
    *passage(f"{MON} 13:00", "in-cam"),
    s(f"{MON} 15:00", "in-cam"),  # walked past the entrance camera inside, never through the exit
]
_BOTH_DAY = [*passage(f"{MON} 08:00", "door"), *passage(f"{MON} 12:30", "door"), *passage(f"{MON} 17:00", "door")]
_NIGHT_SHIFT = [*passage(f"{MON} 22:00", "in-cam"), *passage(f"{TUE} 06:00", "out-cam")]

ATTENDANCE_CASES = [
    Case(
        "two-cameras-several-in-out-cycles-sum",
        _CYCLES,
        TWO_CAMERAS,
        now=t(f"{TUE} 09:00"),
        delivered=through(f"{TUE} 08:00", TWO_CAMERAS),
        # 08:00→12:00 and 12:45→17:00; the `left` at an exit after the exit `seen` adds nothing
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "in-cam"),
                last_out=t(f"{MON} 17:00") + TRACK,
                last_out_event=eid(f"{MON} 17:00", "out-cam"),  # the `left` has no photo: its track's `seen` has
                minutes=240 + 255,
                settled=True,
                final=True,
                sightings=8,
            )
        ],
    ),
    Case(
        "two-cameras-last-out-provisional",
        _LUNCH,
        TWO_CAMERAS,
        now=t(f"{MON} 12:20"),
        delivered=through(f"{MON} 12:19", TWO_CAMERAS),
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "in-cam"),
                last_out=t(f"{MON} 12:00") + TRACK,
                last_out_event=eid(f"{MON} 12:00", "out-cam"),
                minutes=240,
                settled=False,
                final=False,
                sightings=4,
            )
        ],
    ),
    Case(
        "two-cameras-last-out-settled-after-30-min",
        _LUNCH,
        TWO_CAMERAS,
        now=t(f"{MON} 12:30:10"),
        delivered=through(f"{MON} 12:30", TWO_CAMERAS),
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "in-cam"),
                last_out=t(f"{MON} 12:00") + TRACK,
                last_out_event=eid(f"{MON} 12:00", "out-cam"),
                minutes=240,
                settled=True,
                final=False,
                sightings=4,
            )
        ],
    ),
    Case(
        "forgotten-checkout-once-the-day-ended",
        _FORGOT,
        TWO_CAMERAS,
        now=t(f"{TUE} 09:00"),
        delivered=through(f"{TUE} 08:00", TWO_CAMERAS),
        # 08:00→12:00, then 13:00 up to the last sighting at 15:00
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "in-cam"),
                last_out=None,
                last_out_event=None,
                minutes=240 + 120,
                settled=False,
                final=True,
                sightings=7,
                forgot=True,
            )
        ],
    ),
    Case(
        "forgotten-checkout-not-flagged-while-the-day-runs",
        _FORGOT,
        TWO_CAMERAS,
        now=t(f"{MON} 20:00"),
        delivered=through(f"{MON} 20:00", TWO_CAMERAS),
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "in-cam"),
                last_out=None,
                last_out_event=None,
                minutes=360,
                settled=False,
                final=False,
                sightings=7,
                forgot=False,
            )
        ],
    ),
    Case(
        "exit-without-entrance-invents-no-arrival",
        passage(f"{MON} 17:00", "out-cam"),
        TWO_CAMERAS,
        now=t(f"{TUE} 09:00"),
        delivered=through(f"{TUE} 08:00", TWO_CAMERAS),
        expected=[
            ann(
                MON,
                first_in=None,
                first_in_event=None,
                last_out=t(f"{MON} 17:00") + TRACK,
                last_out_event=eid(f"{MON} 17:00", "out-cam"),
                minutes=0,
                settled=True,
                final=True,
                sightings=2,
            )
        ],
    ),
    Case(
        "one-camera-both-first-last-provisional",
        _BOTH_DAY,
        ONE_CAMERA,
        now=t(f"{MON} 17:15"),
        delivered=through(f"{MON} 17:15", ONE_CAMERA),
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "door"),
                last_out=t(f"{MON} 17:00") + TRACK,
                last_out_event=eid(f"{MON} 17:00", "door"),
                minutes=540,  # last - first = 9 h 0 min 10 s
                settled=False,
                final=False,
                sightings=6,
            )
        ],
    ),
    Case(
        "one-camera-both-settled",
        _BOTH_DAY,
        ONE_CAMERA,
        now=t(f"{MON} 17:30:10"),
        delivered=through(f"{MON} 17:30", ONE_CAMERA),
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "door"),
                last_out=t(f"{MON} 17:00") + TRACK,
                last_out_event=eid(f"{MON} 17:00", "door"),
                minutes=540,
                settled=True,
                final=False,
                sightings=6,
            )
        ],
    ),
    Case(
        "one-camera-both-final-exactly-at-day-end",
        _BOTH_DAY,
        ONE_CAMERA,
        now=t(f"{TUE} 04:00"),
        delivered=through(f"{TUE} 04:00", ONE_CAMERA),
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "door"),
                last_out=t(f"{MON} 17:00") + TRACK,
                last_out_event=eid(f"{MON} 17:00", "door"),
                minutes=540,
                settled=True,
                final=True,
                sightings=6,
            )
        ],
    ),
    Case(
        "one-camera-both-03-50-belongs-to-the-day-before-and-the-day-end-settles-it",
        [*passage(f"{MON} 08:00", "door"), *passage(f"{TUE} 03:50", "door")],
        ONE_CAMERA,
        now=t(f"{TUE} 04:00"),  # 03:50:10 + 30 min has not passed, but the day is over
        delivered=through(f"{TUE} 03:59", ONE_CAMERA),
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "door"),
                last_out=t(f"{TUE} 03:50") + TRACK,
                last_out_event=eid(f"{TUE} 03:50", "door"),
                minutes=19 * 60 + 50,
                settled=True,
                final=False,
                sightings=4,
            )
        ],
    ),
    Case(
        "overnight-shift-is-one-day-at-a-night-site-boundary-12-00",
        _NIGHT_SHIFT,
        TWO_CAMERAS,
        now=t(f"{TUE} 13:00"),
        delivered=through(f"{TUE} 12:30", TWO_CAMERAS),
        rules=NIGHT_SITE,
        expected=[
            ann(
                MON,
                first_in=f"{MON} 22:00",
                first_in_event=eid(f"{MON} 22:00", "in-cam"),
                last_out=t(f"{TUE} 06:00") + TRACK,
                last_out_event=eid(f"{TUE} 06:00", "out-cam"),
                minutes=480,
                settled=True,
                final=True,
                sightings=4,
            )
        ],
    ),
    Case(
        "overnight-shift-splits-at-the-default-boundary-04-00",
        _NIGHT_SHIFT,
        TWO_CAMERAS,
        now=t(f"{TUE} 09:00"),
        delivered=through(f"{TUE} 08:00", TWO_CAMERAS),
        # Monday ends inside (a forgotten check-out counted up to its last sighting); Tuesday starts with an exit.
        expected=[
            ann(
                MON,
                first_in=f"{MON} 22:00",
                first_in_event=eid(f"{MON} 22:00", "in-cam"),
                last_out=None,
                last_out_event=None,
                minutes=0,
                settled=False,
                final=True,
                sightings=2,
                forgot=True,
            ),
            ann(
                TUE,
                first_in=None,
                first_in_event=None,
                last_out=t(f"{TUE} 06:00") + TRACK,
                last_out_event=eid(f"{TUE} 06:00", "out-cam"),
                minutes=0,
                settled=True,
                final=False,
                sightings=2,
            ),
        ],
    ),
    Case(
        "overnight-shift-across-dst-spring-forward-is-7-hours",
        [*passage("2024-03-30 22:00", "in-cam"), *passage("2024-03-31 06:00", "out-cam")],
        TWO_CAMERAS,
        now=t("2024-03-31 13:00"),
        delivered=through("2024-03-31 12:00", TWO_CAMERAS),  # exactly the day's end: final
        rules=NIGHT_SITE,
        expected=[
            ann(
                "2024-03-30",
                first_in="2024-03-30 22:00",
                first_in_event=eid("2024-03-30 22:00", "in-cam"),
                last_out=t("2024-03-31 06:00") + TRACK,
                last_out_event=eid("2024-03-31 06:00", "out-cam"),
                minutes=420,
                settled=True,
                final=True,
                sightings=4,
            )
        ],
    ),
    Case(
        "overnight-shift-across-dst-fall-back-is-9-hours",
        [*passage("2024-10-26 22:00", "in-cam"), *passage("2024-10-27 06:00", "out-cam")],
        TWO_CAMERAS,
        now=t("2024-10-27 13:00"),
        delivered=through("2024-10-27 11:59", TWO_CAMERAS),  # one minute short of the day's end: not final
        rules=NIGHT_SITE,
        expected=[
            ann(
                "2024-10-26",
                first_in="2024-10-26 22:00",
                first_in_event=eid("2024-10-26 22:00", "in-cam"),
                last_out=t("2024-10-27 06:00") + TRACK,
                last_out_event=eid("2024-10-27 06:00", "out-cam"),
                minutes=540,
                settled=True,
                final=False,
                sightings=4,
            )
        ],
    ),
    Case(
        "dst-day-23-hours-one-camera-final-at-04-00-cest",
        [*passage("2024-03-30 09:00", "door"), *passage("2024-03-31 03:30", "door")],
        ONE_CAMERA,
        now=t("2024-03-31 05:00"),
        delivered=through("2024-03-31 04:00", ONE_CAMERA),
        # 09:00 CET to 03:30 CEST reads 18.5 h on the wall clock but is 17.5 h
        expected=[
            ann(
                "2024-03-30",
                first_in="2024-03-30 09:00",
                first_in_event=eid("2024-03-30 09:00", "door"),
                last_out=t("2024-03-31 03:30") + TRACK,
                last_out_event=eid("2024-03-31 03:30", "door"),
                minutes=17 * 60 + 30,
                settled=True,
                final=True,
                sightings=4,
            )
        ],
    ),
    Case(
        "device-offline-across-midnight-keeps-yesterday-open",
        passage(f"{MON} 08:00", "in-cam"),  # the exit camera saw her leave at 17:00 but went offline at 16:00
        TWO_CAMERAS,
        now=t(f"{TUE} 08:00"),
        delivered={"in-cam": t(f"{TUE} 07:59"), "out-cam": t(f"{MON} 16:00")},
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "in-cam"),
                last_out=None,
                last_out_event=None,
                minutes=0,
                settled=False,
                final=False,
                sightings=2,
                forgot=True,  # provisional: the day is not final
            )
        ],
    ),
    Case(
        "device-offline-across-midnight-delivers-then-final",
        [*passage(f"{MON} 08:00", "in-cam"), *passage(f"{MON} 17:00", "out-cam")],
        TWO_CAMERAS,
        now=t(f"{TUE} 09:30"),
        delivered={"in-cam": t(f"{TUE} 09:29"), "out-cam": t(f"{TUE} 09:00")},
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "in-cam"),
                last_out=t(f"{MON} 17:00") + TRACK,
                last_out_event=eid(f"{MON} 17:00", "out-cam"),
                minutes=540,
                settled=True,
                final=True,
                sightings=4,
            )
        ],
    ),
    Case(
        "device-that-never-reported-keeps-the-day-open",
        [*passage(f"{MON} 08:00", "in-cam"), *passage(f"{MON} 17:00", "out-cam")],
        MIXED,
        now=t(f"{WED} 09:00"),
        delivered=through(f"{WED} 08:00", TWO_CAMERAS),  # "side" never said anything
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "in-cam"),
                last_out=t(f"{MON} 17:00") + TRACK,
                last_out_event=eid(f"{MON} 17:00", "out-cam"),
                minutes=540,
                settled=True,
                final=False,
                sightings=4,
            )
        ],
    ),
    Case(
        "entrance-camera-and-a-both-side-door",
        [
            *passage(f"{MON} 08:00", "in-cam"),
            *passage(f"{MON} 12:00", "out-cam"),
            *passage(f"{MON} 13:00", "side"),
            *passage(f"{MON} 17:00", "side"),
        ],
        MIXED,
        now=t(f"{TUE} 09:00"),
        delivered=through(f"{TUE} 08:00", MIXED),
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "in-cam"),
                last_out=t(f"{MON} 17:00") + TRACK,
                last_out_event=eid(f"{MON} 17:00", "side"),
                minutes=240 + 240,
                settled=True,
                final=True,
                sightings=8,
            )
        ],
    ),
    Case(
        "duplicates-counted-once-and-non-door-devices-ignored",
        [
            *passage(f"{MON} 08:00", "in-cam"),
            *passage(f"{MON} 08:00", "in-cam"),
            s(f"{MON} 07:00", "lobby-screen"),
            *passage(f"{MON} 17:00", "out-cam"),
        ],
        TWO_CAMERAS,
        now=t(f"{TUE} 09:00"),
        delivered=through(f"{TUE} 08:00", TWO_CAMERAS),
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "in-cam"),
                last_out=t(f"{MON} 17:00") + TRACK,
                last_out_event=eid(f"{MON} 17:00", "out-cam"),
                minutes=540,
                settled=True,
                final=True,
                sightings=4,
            )
        ],
    ),
    Case(
        "photo-from-the-nearest-snapshot-within-the-window-else-the-event-itself",
        [
            s(f"{MON} 08:00", "door", snap=False),  # crop failed
            s(f"{MON} 08:00:10", "door", "left"),
            s(f"{MON} 08:02", "door"),  # re-seen two minutes later, with a photo
            s(f"{MON} 17:00", "door"),
            s(f"{MON} 17:20", "door", "left"),  # a 20-minute track: its photo is outside the window
        ],
        ONE_CAMERA,
        now=t(f"{TUE} 09:00"),
        delivered=through(f"{TUE} 08:00", ONE_CAMERA),
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:02", "door"),
                last_out=t(f"{MON} 17:20"),
                last_out_event=eid(f"{MON} 17:20", "door", "left"),
                minutes=560,
                settled=True,
                final=True,
                sightings=5,
            )
        ],
    ),
    Case(
        "several-people-and-days-sorted-by-day-then-person",
        [
            *passage(f"{TUE} 09:00", "in-cam", person="ann"),
            *passage(f"{MON} 10:00", "in-cam", person="bob"),
            *passage(f"{MON} 11:00", "out-cam", person="bob"),
            *passage(f"{MON} 08:00", "in-cam", person="ann"),
            *passage(f"{MON} 16:00", "out-cam", person="ann"),
        ],
        TWO_CAMERAS,
        now=t(f"{TUE} 10:00"),
        delivered=through(f"{TUE} 09:59", TWO_CAMERAS),
        expected=[
            ann(
                MON,
                first_in=f"{MON} 08:00",
                first_in_event=eid(f"{MON} 08:00", "in-cam"),
                last_out=t(f"{MON} 16:00") + TRACK,
                last_out_event=eid(f"{MON} 16:00", "out-cam"),
                minutes=480,
                settled=True,
                final=True,
                sightings=4,
            ),
            ann(
                MON,
                person="bob",
                first_in=f"{MON} 10:00",
                first_in_event=eid(f"{MON} 10:00", "in-cam", person="bob"),
                last_out=t(f"{MON} 11:00") + TRACK,
                last_out_event=eid(f"{MON} 11:00", "out-cam", person="bob"),
                minutes=60,
                settled=True,
                final=True,
                sightings=4,
            ),
            ann(
                TUE,
                first_in=f"{TUE} 09:00",
                first_in_event=eid(f"{TUE} 09:00", "in-cam"),
                last_out=None,
                last_out_event=None,
                minutes=0,
                settled=False,
                final=False,
                sightings=2,
            ),
        ],
    ),
]


@pytest.mark.parametrize("case", ATTENDANCE_CASES, ids=[c.id for c in ATTENDANCE_CASES])
def test_attendance(case: Case) -> None:
    days = compute_days(case.sightings, case.roles, case.rules, case.now, case.delivered)
    assert days == case.expected


@pytest.mark.parametrize("case", ATTENDANCE_CASES, ids=[c.id for c in ATTENDANCE_CASES])
def test_attendance_is_the_same_for_any_arrival_order(case: Case) -> None:
    """Late events from an offline device arrive out of order; the result must not depend on it."""
    orders = [list(reversed(case.sightings))]
    for seed in range(5):
        shuffled = list(case.sightings)
        random.Random(seed).shuffle(shuffled)
        orders.append(shuffled)
    for order in orders:
        assert compute_days(order, case.roles, case.rules, case.now, case.delivered) == case.expected


def test_a_late_event_overturns_a_provisional_forgotten_checkout() -> None:
    known = passage(f"{MON} 08:00", "in-cam")
    late = passage(f"{MON} 17:00", "out-cam")
    before = compute_days(known, TWO_CAMERAS, RULES, t(f"{TUE} 08:00"), {"in-cam": t(f"{TUE} 08:00")})
    assert [(d.forgot_checkout, d.final, d.last_out) for d in before] == [(True, False, None)]
    after = compute_days(late + known, TWO_CAMERAS, RULES, t(f"{TUE} 09:00"), through(f"{TUE} 09:00", TWO_CAMERAS))
    assert [(d.forgot_checkout, d.final, d.last_out) for d in after] == [(False, True, t(f"{MON} 17:00") + TRACK)]


def test_a_later_sighting_unsettles_and_moves_a_both_camera_departure() -> None:
    morning = passage(f"{MON} 08:00", "door")
    first = compute_days(morning, ONE_CAMERA, RULES, t(f"{MON} 09:00"), {})
    assert (first[0].last_out, first[0].out_settled, first[0].minutes_on_site) == (t(f"{MON} 08:00") + TRACK, True, 0)
    evening = compute_days([*morning, *passage(f"{MON} 18:00", "door")], ONE_CAMERA, RULES, t(f"{MON} 18:05"), {})
    assert (evening[0].last_out, evening[0].out_settled, evening[0].minutes_on_site) == (
        t(f"{MON} 18:00") + TRACK,
        False,
        600,
    )


def test_no_sightings_no_days() -> None:
    assert compute_days([], TWO_CAMERAS, RULES, t(f"{MON} 12:00"), {}) == []


# --- days, boundaries and DST ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "starts_at", "expected"),
    [
        pytest.param(f"{MON} 03:59", time(4), "2024-03-03", id="before-the-boundary-is-the-day-before"),
        pytest.param(f"{MON} 04:00", time(4), MON, id="the-boundary-starts-the-day"),
        pytest.param(f"{TUE} 06:00", time(12), MON, id="night-site-morning-belongs-to-the-evening-before"),
        pytest.param(f"{MON} 23:59", time(0), MON, id="midnight-boundary"),
        pytest.param("2024-03-31 03:30+02:00", time(4), "2024-03-30", id="dst-spring-day-before-boundary"),
        pytest.param("2024-03-31 03:00+02:00", time(2, 30), "2024-03-31", id="boundary-in-the-gap-starts-at-the-jump"),
        pytest.param("2024-03-31 01:59:59+01:00", time(2, 30), "2024-03-30", id="just-before-the-jump"),
        pytest.param("2024-10-27 02:10+02:00", time(2, 30), "2024-10-26", id="fold-first-pass-before-boundary"),
        pytest.param("2024-10-27 02:30+02:00", time(2, 30), "2024-10-27", id="fold-first-occurrence-starts-the-day"),
        pytest.param("2024-10-27 02:10+01:00", time(2, 30), "2024-10-27", id="fold-second-pass-stays-in-the-new-day"),
    ],
)
def test_local_day(at: str, starts_at: time, expected: str) -> None:
    rules = AttendanceRules(timezone="Europe/Berlin", day_starts_at=starts_at)
    assert local_day(t(at), rules) == date.fromisoformat(expected)


@pytest.mark.parametrize(
    ("day", "hours"),
    [
        pytest.param("2024-03-30", 23, id="spring-forward-day"),
        pytest.param("2024-10-26", 25, id="fall-back-day"),
        pytest.param(MON, 24, id="ordinary-day"),
    ],
)
def test_day_bounds_length_on_dst_changes(day: str, hours: int) -> None:
    start, end = day_bounds(date.fromisoformat(day), RULES)
    assert start == t(f"{day} 04:00")
    assert end - start == timedelta(hours=hours)


def test_a_day_boundary_that_does_not_exist_starts_at_the_transition() -> None:
    santiago = AttendanceRules(timezone="America/Santiago", day_starts_at=time(0))
    # Chile moves 2024-09-08 00:00 (-04) straight to 01:00 (-03): midnight never happens that day.
    assert day_bounds(date(2024, 9, 8), santiago)[0] == datetime(2024, 9, 8, 4, 0, tzinfo=UTC)
    berlin_0230 = AttendanceRules(timezone="Europe/Berlin", day_starts_at=time(2, 30))
    assert day_bounds(date(2024, 3, 31), berlin_0230)[0] == datetime(2024, 3, 31, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("timezone", "starts_at", "around"),
    [
        pytest.param("Europe/Berlin", time(4), "2024-03-31", id="berlin-04-spring"),
        pytest.param("Europe/Berlin", time(2, 30), "2024-03-31", id="berlin-0230-spring-gap"),
        pytest.param("Europe/Berlin", time(2, 30), "2024-10-27", id="berlin-0230-fall-fold"),
        pytest.param("Europe/Berlin", time(0), "2024-10-27", id="berlin-midnight-fall"),
        pytest.param("America/Santiago", time(0), "2024-09-08", id="santiago-midnight-gap"),
        pytest.param("America/Santiago", time(0), "2024-04-07", id="santiago-midnight-fold"),
    ],
)
def test_every_instant_lies_in_the_bounds_of_its_day(timezone: str, starts_at: time, around: str) -> None:
    rules = AttendanceRules(timezone=timezone, day_starts_at=starts_at)
    at = datetime.fromisoformat(around).replace(tzinfo=UTC) - timedelta(days=2)
    previous = local_day(at, rules)
    for _ in range(4 * 24 * 60 // 7):
        day = local_day(at, rules)
        start, end = day_bounds(day, rules)
        assert start <= at < end, (at, day, start, end)
        assert day in (previous, previous + timedelta(days=1))
        previous = day
        at += timedelta(minutes=7)


@pytest.mark.parametrize(
    ("now", "delivered", "final"),
    [
        pytest.param(f"{MON} 23:00", {"in-cam": f"{TUE} 05:00", "out-cam": f"{TUE} 05:00"}, False, id="not-ended"),
        pytest.param(f"{TUE} 04:00", {"in-cam": f"{TUE} 04:00", "out-cam": f"{TUE} 04:00"}, True, id="exactly-at-end"),
        pytest.param(f"{TUE} 09:00", {"in-cam": f"{TUE} 09:00", "out-cam": f"{MON} 23:59"}, False, id="one-behind"),
        pytest.param(f"{TUE} 09:00", {"in-cam": f"{TUE} 09:00"}, False, id="one-missing"),
        pytest.param(f"{WED} 09:00", {"in-cam": f"{WED} 09:00", "out-cam": f"{TUE} 04:01"}, True, id="caught-up"),
    ],
)
def test_day_is_final(now: str, delivered: dict[str, str], final: bool) -> None:
    delivered_at = {device: t(when) for device, when in delivered.items()}
    assert day_is_final(date.fromisoformat(MON), TWO_CAMERAS, RULES, t(now), delivered_at) is final


def test_attendance_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        AttendanceRules(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="without a tzinfo"):
        AttendanceRules(timezone="UTC", day_starts_at=time(4, tzinfo=UTC))
    with pytest.raises(ValueError, match="must not be negative"):
        AttendanceRules(timezone="UTC", settle_out_after=timedelta(minutes=-1))
    with pytest.raises(ValueError, match="camera role"):
        compute_days([], {"cam": "sideways"}, RULES, t(f"{MON} 12:00"), {})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="now must be a timezone-aware"):
        compute_days([], TWO_CAMERAS, RULES, datetime(2024, 3, 4, 12), {})
    with pytest.raises(ValueError, match="delivered_through"):
        compute_days([], TWO_CAMERAS, RULES, t(f"{MON} 12:00"), {"in-cam": datetime(2024, 3, 4, 12)})


# --- presence ---------------------------------------------------------------------------------------------------

PRESENCE_ROLES: dict[str, Role] = {"in-cam": "entrance", "out-cam": "exit", "door": "both"}
PRESENCE = PresenceRules()


def state(value: str, since: str | None, door: str | None, last_seen: str | None) -> PresenceState:
    """A presence state for ann with Berlin wall times."""
    assert value in ("in", "out", "unknown")
    return PresenceState(
        "ann",
        "in" if value == "in" else "out" if value == "out" else "unknown",
        t(since) if since else None,
        door,
        t(last_seen) if last_seen else None,
    )


TIMED_OUT = state("out", f"{MON} 08:00", None, f"{MON} 08:00")  # left unseen: expire() wrote this


@dataclass(frozen=True)
class PresenceCase:
    """Sightings applied one by one, in the order the hub received them, from a starting state."""

    id: str
    steps: list[Sighting]
    expected: PresenceState
    start: PresenceState | None = None
    rules: PresenceRules = field(default=PRESENCE)


PRESENCE_CASES = [
    PresenceCase(
        "entrance-means-in", [s(f"{MON} 08:00", "in-cam")], state("in", f"{MON} 08:00", "in-cam", f"{MON} 08:00")
    ),
    PresenceCase(
        "exit-means-out",
        [*passage(f"{MON} 08:00", "in-cam"), s(f"{MON} 17:00", "out-cam")],
        state("out", f"{MON} 17:00", "out-cam", f"{MON} 17:00"),
    ),
    PresenceCase(
        "track-end-at-the-exit-keeps-since",
        [s(f"{MON} 08:00", "in-cam"), *passage(f"{MON} 17:00", "out-cam")],
        state("out", f"{MON} 17:00", "out-cam", left_local(f"{MON} 17:00")),
    ),
    PresenceCase(
        "exit-first-for-someone-never-seen",
        [s(f"{MON} 17:00", "out-cam")],
        state("out", f"{MON} 17:00", "out-cam", f"{MON} 17:00"),
    ),
    PresenceCase(
        "both-camera-means-in-and-does-not-toggle",
        [*passage(f"{MON} 08:00", "door"), *passage(f"{MON} 12:30", "door"), s(f"{MON} 17:00", "door")],
        state("in", f"{MON} 08:00", "door", f"{MON} 17:00"),
    ),
    PresenceCase(
        "late-event-older-than-since-does-not-move-presence-back",
        [s(f"{MON} 08:00", "in-cam"), s(f"{MON} 17:00", "out-cam"), s(f"{MON} 12:00", "in-cam")],
        state("out", f"{MON} 17:00", "out-cam", f"{MON} 17:00"),
    ),
    PresenceCase(
        "late-event-between-since-and-last-seen-changes-nothing",
        [s(f"{MON} 08:00", "in-cam"), s(f"{MON} 12:00", "in-cam", "left"), s(f"{MON} 10:00", "out-cam")],
        state("in", f"{MON} 08:00", "in-cam", f"{MON} 12:00"),
    ),
    PresenceCase(
        "duplicate-is-harmless",
        [s(f"{MON} 08:00", "in-cam"), s(f"{MON} 08:00", "in-cam")],
        state("in", f"{MON} 08:00", "in-cam", f"{MON} 08:00"),
    ),
    PresenceCase(
        "within-the-timeout-the-visit-goes-on",
        [s(f"{MON} 08:00", "in-cam"), s(f"{MON} 19:59", "in-cam")],
        state("in", f"{MON} 08:00", "in-cam", f"{MON} 19:59"),
    ),
    PresenceCase(
        "after-a-timeout-gap-a-sighting-starts-a-new-visit",
        [s(f"{MON} 08:00", "in-cam"), s(f"{TUE} 09:00", "in-cam")],
        state("in", f"{TUE} 09:00", "in-cam", f"{TUE} 09:00"),
    ),
    PresenceCase(
        "both-camera-next-morning-is-a-new-visit",
        [s(f"{MON} 08:00", "door"), s(f"{MON} 17:00", "door"), s(f"{TUE} 08:00", "door")],
        state("in", f"{TUE} 08:00", "door", f"{TUE} 08:00"),
    ),
    PresenceCase(
        "shorter-timeout-rule",
        [s(f"{MON} 08:00", "in-cam"), s(f"{MON} 10:00", "in-cam")],
        state("in", f"{MON} 10:00", "in-cam", f"{MON} 10:00"),
        rules=PresenceRules(timeout=timedelta(hours=2)),
    ),
    PresenceCase(
        "exit-after-a-timeout-names-the-door-and-time",
        [s(f"{MON} 17:00", "out-cam")],
        state("out", f"{MON} 17:00", "out-cam", f"{MON} 17:00"),
        start=TIMED_OUT,
    ),
    PresenceCase(
        "entrance-after-a-timeout-is-in-again",
        [s(f"{TUE} 08:00", "in-cam")],
        state("in", f"{TUE} 08:00", "in-cam", f"{TUE} 08:00"),
        start=TIMED_OUT,
    ),
    PresenceCase("late-event-before-a-timeout-changes-nothing", [s(f"{MON} 07:00", "in-cam")], TIMED_OUT, TIMED_OUT),
]


@pytest.mark.parametrize("case", PRESENCE_CASES, ids=[c.id for c in PRESENCE_CASES])
def test_presence(case: PresenceCase) -> None:
    current = case.start
    for sighting in case.steps:
        current = apply_sighting(current, sighting, PRESENCE_ROLES[sighting.device], case.rules)
    assert current == case.expected


@pytest.mark.parametrize(
    ("before", "now", "rules", "after"),
    [
        pytest.param(
            state("in", f"{MON} 08:00", "in-cam", f"{MON} 09:00"),
            f"{MON} 21:00",
            PRESENCE,
            [state("out", f"{MON} 09:00", None, f"{MON} 09:00")],
            id="in-for-12-hours-unseen-goes-out-since-last-seen",
        ),
        pytest.param(
            state("in", f"{MON} 08:00", "in-cam", f"{MON} 09:00"),
            f"{MON} 20:59:59",
            PRESENCE,
            [],
            id="one-second-short-stays-in",
        ),
        pytest.param(
            state("in", f"{MON} 08:00", "door", f"{MON} 17:00"),
            f"{MON} 19:00",
            PresenceRules(timeout=timedelta(hours=2)),
            [state("out", f"{MON} 17:00", None, f"{MON} 17:00")],
            id="configured-timeout",
        ),
        pytest.param(
            state("out", f"{MON} 17:00", "out-cam", f"{MON} 17:00"), f"{WED} 09:00", PRESENCE, [], id="out-stays-out"
        ),
        pytest.param(PresenceState.unknown("ann"), f"{WED} 09:00", PRESENCE, [], id="unknown-stays-unknown"),
    ],
)
def test_presence_timeout(before: PresenceState, now: str, rules: PresenceRules, after: list[PresenceState]) -> None:
    assert expire([before], t(now), rules) == after


def test_expire_returns_only_the_changed_states_in_order() -> None:
    states = [
        replace(state("in", f"{MON} 08:00", "in-cam", f"{MON} 08:00"), person_id="ann"),
        replace(state("in", f"{MON} 08:00", "in-cam", f"{MON} 18:00"), person_id="bob"),
        replace(state("in", f"{MON} 07:00", "door", f"{MON} 07:00"), person_id="cem"),
    ]
    changed = expire(states, t(f"{MON} 20:00"), PRESENCE)
    assert [(c.person_id, c.state, c.since, c.door) for c in changed] == [
        ("ann", "out", t(f"{MON} 08:00"), None),
        ("cem", "out", t(f"{MON} 07:00"), None),
    ]
    assert next_expiry(states, PRESENCE) == t(f"{MON} 19:00")
    assert next_expiry([*changed, states[1]], PRESENCE) == t(f"{TUE} 06:00")
    assert next_expiry(changed, PRESENCE) is None


def test_presence_after_timeout_and_late_exit_round_trip() -> None:
    """The hub's loop: apply, expire, persist, restart, apply a late event."""
    current = apply_sighting(None, s(f"{MON} 08:00", "in-cam"), "entrance", PRESENCE)
    (current,) = expire([current], t(f"{MON} 20:00"), PRESENCE)
    restored = PresenceState.from_dict(json.loads(json.dumps(current.to_dict())))
    assert restored == current
    late = apply_sighting(restored, s(f"{MON} 16:30", "out-cam"), "exit", PRESENCE)
    assert late == state("out", f"{MON} 16:30", "out-cam", f"{MON} 16:30")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(PresenceState.unknown("ann"), id="unknown"),
        pytest.param(state("in", f"{MON} 08:00", "in-cam", f"{MON} 12:00"), id="in"),
        pytest.param(state("out", f"{MON} 17:00", "out-cam", f"{MON} 17:00"), id="out-at-a-door"),
        pytest.param(TIMED_OUT, id="out-unseen"),
        pytest.param(
            PresenceState(
                "bob",
                "in",
                datetime(2024, 3, 4, 8, 0, 0, 123456, tzinfo=BERLIN),
                "door",
                datetime(2024, 3, 4, 9, 0, tzinfo=BERLIN),
            ),
            id="non-utc-input-microseconds",
        ),
    ],
)
def test_presence_state_round_trips_through_json(value: PresenceState) -> None:
    data = value.to_dict()
    assert data["since"] is None or str(data["since"]).endswith("+00:00")
    restored = PresenceState.from_dict(json.loads(json.dumps(data)))
    assert restored == value
    assert restored.to_dict() == data


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param({"person_id": "ann", "state": "in", "since": None, "door": None}, "missing", id="missing-field"),
        pytest.param({**TIMED_OUT.to_dict(), "mood": "happy"}, "unknown fields \\['mood'\\]", id="unknown-field"),
        pytest.param({**TIMED_OUT.to_dict(), "state": "gone"}, "state must be", id="bad-state"),
        pytest.param({**TIMED_OUT.to_dict(), "since": "2024-03-04T08:00:00"}, "no UTC offset", id="naive-time"),
        pytest.param({**TIMED_OUT.to_dict(), "since": "yesterday"}, "not an ISO 8601", id="not-a-time"),
        pytest.param({**TIMED_OUT.to_dict(), "since": 1709539200}, "ISO 8601 string", id="number-time"),
        pytest.param({**TIMED_OUT.to_dict(), "state": "in"}, "needs the door", id="in-without-door"),
        pytest.param(
            {**TIMED_OUT.to_dict(), "since": "2024-03-05T08:00:00+00:00"}, "after last_seen", id="since-after-last-seen"
        ),
        pytest.param({**TIMED_OUT.to_dict(), "person_id": ""}, "person_id", id="empty-person"),
    ],
)
def test_presence_state_refuses_bad_records(data: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        PresenceState.from_dict(data)


def test_presence_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        PresenceRules(timeout=timedelta(0))
    with pytest.raises(ValueError, match="not 'bob'"):
        apply_sighting(PresenceState.unknown("bob"), s(f"{MON} 08:00", "in-cam"), "entrance", PRESENCE)
    with pytest.raises(ValueError, match="camera role"):
        apply_sighting(None, s(f"{MON} 08:00", "in-cam"), "sideways", PRESENCE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        Sighting("e1", "in-cam", "ann", datetime(2024, 3, 4, 8), "seen", True)
    with pytest.raises(ValueError, match="type must be"):
        Sighting("e1", "in-cam", "ann", t(f"{MON} 08:00"), "passed", True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown state has no"):
        PresenceState("ann", "unknown", t(f"{MON} 08:00"), None, t(f"{MON} 08:00"))


def test_sighting_from_a_wire_event_is_utc_and_skips_unknown_faces() -> None:
    event = make_event(
        event_id="01HV6Z3X9Q8J2K4M5N6P7R8S9T",
        device="in-cam",
        seq=7,
        at=t(f"{MON} 08:00"),
        type="left",
        person_id="ann",
        score=0.7,
        track=3,
    )
    sighting = sighting_from_event(event)
    assert sighting == Sighting(
        "01HV6Z3X9Q8J2K4M5N6P7R8S9T", "in-cam", "ann", t(f"{MON} 08:00"), "left", False, quality=0.8
    ), "the event's face quality comes along (the best_within first-in photo picks by it)"
    assert sighting.at.utcoffset() == timedelta(0)
    assert sighting_from_event(event.model_copy(update={"person_id": None})) is None
    berlin = Sighting("e2", "in-cam", "ann", datetime(2024, 3, 4, 8, tzinfo=BERLIN), "seen", True)
    assert berlin.at.tzinfo is UTC


# --- sign-off outcomes: forgotten check-outs after sign-off, last-out policies, retired devices --------------------

_ENTRANCE_ONLY = passage(f"{MON} 08:00", "in-cam")
_NIGHT_FORGOT = [*passage(f"{MON} 22:00", "in-cam"), s(f"{TUE} 03:00", "in-cam")]  # overnight, never out
SIGNOFF_CASES = [
    # (id, sightings, rules, now, delivered, retired) -> (status, final, last_out, minutes)
    pytest.param(
        _ENTRANCE_ONLY,
        RULES,
        f"{TUE} 09:00",
        through(f"{TUE} 09:00", TWO_CAMERAS),
        set(),
        ("forgot_checkout", True, None, 0),
        id="forgot-stays-visible-after-sign-off",
    ),
    pytest.param(
        _ENTRANCE_ONLY,
        RULES,
        f"{MON} 20:00",
        through(f"{MON} 20:00", TWO_CAMERAS),
        set(),
        ("open", False, None, 0),
        id="not-forgotten-before-the-day-ends",
    ),
    pytest.param(
        _FORGOT,
        replace(RULES, last_out="last_sighting"),
        f"{TUE} 09:00",
        through(f"{TUE} 09:00", TWO_CAMERAS),
        set(),
        ("forgot_checkout", True, t(f"{MON} 15:00"), 240 + 120),
        id="policy-last-sighting",
    ),
    pytest.param(
        _FORGOT,
        replace(RULES, last_out="scheduled_end", scheduled_end=time(17)),
        f"{TUE} 09:00",
        through(f"{TUE} 09:00", TWO_CAMERAS),
        set(),
        ("forgot_checkout", True, t(f"{MON} 17:00"), 240 + 240),
        id="policy-scheduled-end",
    ),
    pytest.param(
        _NIGHT_FORGOT,
        replace(NIGHT_SITE, last_out="scheduled_end", scheduled_end=time(6)),
        f"{TUE} 13:00",
        through(f"{TUE} 13:00", TWO_CAMERAS),
        set(),
        ("forgot_checkout", True, t(f"{TUE} 06:00"), 8 * 60),
        id="night-shift-scheduled-end-after-midnight",
    ),
    pytest.param(
        _ENTRANCE_ONLY,
        RULES,
        f"{TUE} 09:00",
        {"in-cam": t(f"{TUE} 09:00")},
        set(),
        ("forgot_checkout", False, None, 0),
        id="a-silent-device-holds-the-day-open",
    ),
    pytest.param(
        _ENTRANCE_ONLY,
        RULES,
        f"{TUE} 09:00",
        {"in-cam": t(f"{TUE} 09:00")},
        {"out-cam"},
        ("forgot_checkout", True, None, 0),
        id="a-retired-device-does-not",
    ),
    pytest.param(
        _CYCLES,
        replace(RULES, signoff_after=timedelta(minutes=30)),
        f"{TUE} 04:10",
        through(f"{TUE} 04:10", TWO_CAMERAS),
        set(),
        ("open", False, t(f"{MON} 17:00") + TRACK, 495),
        id="not-final-within-the-settle-delay",
    ),
    pytest.param(
        _CYCLES,
        replace(RULES, signoff_after=timedelta(minutes=30)),
        f"{TUE} 04:30",
        through(f"{TUE} 04:30", TWO_CAMERAS),
        set(),
        ("final", True, t(f"{MON} 17:00") + TRACK, 495),
        id="final-after-the-settle-delay",
    ),
]


@pytest.mark.parametrize(("sightings", "rules", "now", "delivered", "retired", "expected"), SIGNOFF_CASES)
def test_sign_off_outcomes(
    sightings: list[Sighting],
    rules: AttendanceRules,
    now: str,
    delivered: dict[str, datetime],
    retired: set[str],
    expected: tuple[str, bool, datetime | None, int],
) -> None:
    (result,) = compute_days(sightings, TWO_CAMERAS, rules, t(now), delivered, retired)
    assert (day_status(result), result.final, result.last_out, result.minutes_on_site) == expected


def test_last_out_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="last_out must be one of none, last_sighting, scheduled_end"):
        AttendanceRules(timezone="UTC", last_out="guess")  # type: ignore[arg-type]


# --- first-in photo policy -------------------------------------------------------------------------------------

BEST = replace(RULES, first_in_photo="best_within", first_in_photo_window=timedelta(minutes=5))


def q(local: str, device: str, quality: float | None, snap: bool = True) -> Sighting:
    """A `seen` sighting with a face quality score (None: not known, as from rows stored before the score)."""
    return replace(s(local, device, snap=snap), quality=quality)


PHOTO_CASES: list[tuple[str, list[Sighting], AttendanceRules, str]] = [
    (
        "earliest-keeps-the-arrival-photo-however-good-the-later-ones",
        [q(f"{MON} 08:00", "in-cam", 0.4), q(f"{MON} 08:02", "in-cam", 0.95)],
        RULES,
        eid(f"{MON} 08:00", "in-cam"),
    ),
    (
        "best-within-takes-the-better-photo-two-minutes-later-at-another-door",
        [q(f"{MON} 08:00", "in-cam", 0.4), q(f"{MON} 08:02", "side", 0.95), q(f"{MON} 08:03", "in-cam", 0.7)],
        BEST,
        eid(f"{MON} 08:02", "side"),
    ),
    (
        "best-within-ignores-a-better-photo-after-the-window",
        [q(f"{MON} 08:00", "in-cam", 0.4), q(f"{MON} 08:05:01", "in-cam", 0.99)],
        BEST,
        eid(f"{MON} 08:00", "in-cam"),
    ),
    (
        "best-within-counts-the-window-end-itself",
        [q(f"{MON} 08:00", "in-cam", 0.4), q(f"{MON} 08:05", "in-cam", 0.99)],
        BEST,
        eid(f"{MON} 08:05", "in-cam"),
    ),
    (
        "best-within-keeps-the-earliest-on-a-tie",
        [q(f"{MON} 08:00", "in-cam", 0.8), q(f"{MON} 08:01", "in-cam", 0.8), q(f"{MON} 08:02", "side", 0.8)],
        BEST,
        eid(f"{MON} 08:00", "in-cam"),
    ),
    (
        "best-within-needs-a-snapshot",
        [q(f"{MON} 08:00", "in-cam", 0.4), q(f"{MON} 08:01", "in-cam", 0.99, snap=False)],
        BEST,
        eid(f"{MON} 08:00", "in-cam"),
    ),
    (
        "best-within-finds-a-photo-when-the-arrival-has-none",
        [q(f"{MON} 08:00", "in-cam", 0.9, snap=False), q(f"{MON} 08:04", "out-cam", 0.3)],
        BEST,
        eid(f"{MON} 08:04", "out-cam"),
    ),
    (
        "an-unknown-quality-counts-lowest",
        [q(f"{MON} 08:00", "in-cam", None), q(f"{MON} 08:01", "in-cam", 0.1)],
        BEST,
        eid(f"{MON} 08:01", "in-cam"),
    ),
    (
        "a-zero-window-keeps-the-arrival-photo",
        [q(f"{MON} 08:00", "in-cam", 0.4), q(f"{MON} 08:00:30", "in-cam", 0.9)],
        replace(BEST, first_in_photo_window=timedelta(0)),
        eid(f"{MON} 08:00", "in-cam"),
    ),
]


@pytest.mark.parametrize(("sightings", "rules", "photo"), [c[1:] for c in PHOTO_CASES], ids=[c[0] for c in PHOTO_CASES])
def test_first_in_photo_policy(sightings: list[Sighting], rules: AttendanceRules, photo: str) -> None:
    for order in (sightings, list(reversed(sightings))):
        (day,) = compute_days(order, MIXED, rules, t(f"{TUE} 09:00"), through(f"{TUE} 08:00", MIXED))
        assert day.first_in == sightings[0].at, "the first-in time stays the earliest arrival's"
        assert day.first_in_event == photo


def test_first_in_photo_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="first_in_photo must be one of earliest, best_within"):
        AttendanceRules("Europe/Berlin", first_in_photo="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="first_in_photo_window"):
        AttendanceRules("Europe/Berlin", first_in_photo_window=timedelta(minutes=-1))
