"""The morning report of forgotten check-outs: which past attendance days are owed a report, and its alert (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from edge.protocol.times import as_utc, require_aware
from hub.alert_settings import ForgottenCheckoutRule
from hub.alerts.rules import Condition
from hub.domain.attendance import AttendanceRules, local_day

RULE = "forgotten_checkout"
MAX_DAYS = 7
"""At most this many past days are reported at once (after the hub was down, or the rule held back by a pause)."""
MAX_NAMED = 50
"""At most this many people are named in one report; the rest are counted ("and 12 more")."""
LIVES_FOR = timedelta(days=1)
"""A report resolves itself this long after it was made (the next morning's report takes its place)."""


@dataclass(frozen=True, slots=True)
class ForgottenCheckout:
    """One person who forgot to check out on a day: who, when they came in, and whether the day is signed off."""

    person_id: str
    name: str | None
    first_in: datetime | None
    final: bool

    def __post_init__(self) -> None:
        if self.first_in is not None:
            object.__setattr__(self, "first_in", as_utc(self.first_in, f"person {self.person_id}: first_in"))


def report_time(rule: ForgottenCheckoutRule) -> time:
    """The rule's ``at`` as a wall-clock time (the settings check it is ``HH:MM``)."""
    hours, minutes = rule.at.split(":")
    return time(int(hours), int(minutes))


def due_days(now: datetime, last_reported: date | None, at: time, rules: AttendanceRules) -> list[date]:
    """The attendance days whose report is owed at ``now``, oldest first; empty when none is.

    The latest slot is the last moment at or before ``now`` when the site's clock showed ``at``; it reports the
    attendance day before the one that slot lies in (so that day has ended, whatever ``at`` and
    ``attendance.day_starts_at`` are). Days after ``last_reported`` up to that one are owed, at most
    :data:`MAX_DAYS` of them; with nothing reported yet (first start, or the rule just enabled) only that one.
    """
    require_aware(now, "now")
    local = now.astimezone(rules.zone)
    slot_date = local.date() if local.replace(tzinfo=None).time() >= at else local.date() - timedelta(days=1)
    slot = datetime.combine(slot_date, at).replace(tzinfo=rules.zone)
    latest = local_day(min(slot, now), rules) - timedelta(days=1)
    if last_reported is None:
        return [latest]
    first = max(last_reported + timedelta(days=1), latest - timedelta(days=MAX_DAYS - 1))
    return [first + timedelta(days=n) for n in range((latest - first).days + 1)]


def report(
    day: date,
    people: Sequence[ForgottenCheckout],
    rule: ForgottenCheckoutRule,
    rules: AttendanceRules,
    now: datetime,
) -> Condition | None:
    """The alert naming who forgot to check out on ``day`` (site-local arrival times); None when nobody did.

    Its key is the day, so each day's report is one alert; it is momentary with a one-day window, so it resolves
    itself a day after it was made.
    """
    require_aware(now, "now")
    if not people:
        return None
    listed = sorted(people, key=lambda p: ((p.name or p.person_id).casefold(), p.person_id))

    def entry(person: ForgottenCheckout) -> str:
        arrived = person.first_in.astimezone(rules.zone).strftime("%H:%M") if person.first_in else "-"
        return f"{person.name or person.person_id} (in {arrived})"

    names = ", ".join(entry(p) for p in listed[:MAX_NAMED])
    if len(listed) > MAX_NAMED:
        names += f" and {len(listed) - MAX_NAMED} more"
    signed = (
        "signed off"
        if all(p.final for p in people)
        else "not signed off yet: a device has not delivered past the day's end, so a late event may still change it"
    )
    count = f"{len(listed)} {'person' if len(listed) == 1 else 'people'}"
    return Condition(
        RULE,
        (RULE, day.isoformat()),
        rule.severity,
        f"forgotten check-outs on {day.isoformat()}",
        f"{count} did not check out on {day.strftime('%a')} {day.isoformat()} ({signed}): {names}",
        now,
        momentary=True,
        fold_window=LIVES_FOR,
    )
