"""The morning report of forgotten check-outs: which days are owed a report at a site-local time, and its text."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from hub.alert_settings import ForgottenCheckoutRule
from hub.alerts.book import AlertBook
from hub.alerts.morning import MAX_NAMED, ForgottenCheckout, due_days, report
from hub.domain.attendance import AttendanceRules

BERLIN = ZoneInfo("Europe/Berlin")
RULES = AttendanceRules("Europe/Berlin")  # days start at 04:00 local
NIGHT = AttendanceRules("Europe/Berlin", day_starts_at=time(12, 0))
MON, TUE, WED = date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)
NINE = time(9, 0)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    """A Berlin wall time as a UTC instant."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


@pytest.mark.parametrize(
    ("now", "last", "at", "rules", "expected"),
    [
        (local(TUE, 8, 59), None, NINE, RULES, [MON - timedelta(days=1)]),  # before 09:00: Sunday's slot was due
        (local(TUE, 8, 59), MON - timedelta(days=1), NINE, RULES, []),  # ... and was reported
        (local(TUE, 9, 0), MON - timedelta(days=1), NINE, RULES, [MON]),  # 09:00 Tuesday: Monday
        (local(TUE, 23, 0), MON, NINE, RULES, []),  # once per day
        (local(WED, 2, 0), MON, NINE, RULES, []),  # after midnight, before the next slot
        (
            local(WED, 9, 30),
            MON - timedelta(days=3),
            NINE,
            RULES,
            [MON - timedelta(days=2), MON - timedelta(1), MON, TUE],
        ),
        (local(WED, 9, 30), MON - timedelta(days=30), NINE, RULES, [TUE - timedelta(days=n) for n in range(6, -1, -1)]),
        # a slot before the day start reports the day before the one still running (it has ended)
        (local(TUE, 3, 0), None, time(3, 0), RULES, [MON - timedelta(days=1)]),
        # night shifts (days start at noon): at 09:00 Tuesday Monday's shift is still running; Sunday's is reported
        (local(TUE, 9, 0), None, NINE, NIGHT, [MON - timedelta(days=1)]),
        (local(TUE, 13, 0), None, time(13, 0), NIGHT, [MON]),
    ],
)
def test_due_days(now: datetime, last: date | None, at: time, rules: AttendanceRules, expected: list[date]) -> None:
    assert due_days(now, last, at, rules) == expected


def test_due_days_on_the_night_clocks_go_forward() -> None:
    """2026-03-29 02:30 does not exist in Berlin: the report at "02:30" is made at 03:00, once.

    A 02:30 slot lies before the 04:00 day start, so it reports the day before the attendance day it lies in.
    """
    sunday = date(2026, 3, 29)
    just_after = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST, the first instant after the gap
    before = due_days(just_after - timedelta(minutes=1), None, time(2, 30), RULES)
    assert before == [sunday - timedelta(days=3)], "01:59: the slot still due is Saturday's"
    assert due_days(just_after, before[0], time(2, 30), RULES) == [sunday - timedelta(days=2)]
    assert due_days(just_after + timedelta(hours=5), sunday - timedelta(days=2), time(2, 30), RULES) == []


def person(pid: str, name: str | None, hour: int, final: bool = True) -> ForgottenCheckout:
    return ForgottenCheckout(pid, name, local(MON, hour), final)


def test_report_names_who_forgot_with_site_local_arrival_and_resolves_a_day_later() -> None:
    rule = ForgottenCheckoutRule(enabled=True)
    now = local(TUE, 9)
    condition = report(
        MON, [person("p-ben", "Ben", 9), person("p-ada", "ada", 8), person("p-x", None, 7)], rule, RULES, now
    )
    assert condition is not None
    assert condition.key == ("forgotten_checkout", "2026-11-23") and condition.severity == "info"
    assert condition.message == (
        "3 people did not check out on Mon 2026-11-23 (signed off): ada (in 08:00), Ben (in 09:00), p-x (in 07:00)"
    )
    book = AlertBook()
    (opened,) = book.apply([condition], now)
    assert opened.kind == "opened"
    assert book.apply([condition], now + timedelta(hours=1))[0].kind == "folded", "the same day's report is one alert"
    (resolved,) = book.apply([], now + timedelta(days=1))
    assert resolved.kind == "resolved" and resolved.alert.alert_id == opened.alert.alert_id


def test_report_says_when_the_day_is_not_signed_off_and_counts_beyond_the_named() -> None:
    rule = ForgottenCheckoutRule(enabled=True, severity="warning")
    many = [person(f"p-{n:03d}", f"N{n:03d}", 8, final=n != 0) for n in range(MAX_NAMED + 12)]
    condition = report(MON, many, rule, RULES, local(TUE, 9))
    assert condition is not None and condition.severity == "warning"
    assert condition.message.startswith(f"{MAX_NAMED + 12} people did not check out on Mon 2026-11-23 (not signed off")
    assert condition.message.endswith(" and 12 more")
    assert report(MON, [], rule, RULES, local(TUE, 9)) is None, "nobody forgot: nothing to say"
