"""Attendance: per person per local day, first in and last out with their photos, time on site, and finality (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final, Literal
from zoneinfo import ZoneInfo

from edge.protocol.times import require_aware
from hub.domain.presence import ROLES, Role, Sighting
from hub.domain.zones import site_zone

LastOutPolicy = Literal["none", "last_sighting", "scheduled_end"]
LAST_OUT_POLICIES: Final[tuple[LastOutPolicy, ...]] = ("none", "last_sighting", "scheduled_end")
FirstInPhotoPolicy = Literal["earliest", "best_within"]
FIRST_IN_PHOTO_POLICIES: Final[tuple[FirstInPhotoPolicy, ...]] = ("earliest", "best_within")


@dataclass(frozen=True, slots=True)
class AttendanceRules:
    """How sightings become attendance days.

    ``timezone``: the site's IANA zone; days are local days there.
    ``day_starts_at``: local wall-clock time at which an attendance day begins (default 04:00: a sighting at 03:30
    belongs to the day before). Put it where nobody is on site: a site with night shifts 22:00–06:00 uses e.g.
    12:00 so that a shift is one day, labelled with the date it started.
    ``settle_out_after``: a last-out is provisional until this long has passed without a later sighting of that
    person that day (or until the day has ended).
    ``photo_within``: when the sighting that marks an arrival or a departure has no snapshot (``left`` events carry
    none), the photo is taken from the nearest sighting of the same person at the same device within this long.
    ``signoff_after``: a day is signed off (final) no sooner than this long after its end, and only once every
    active device has delivered past its end (see :func:`day_is_final`).
    ``last_out``: what a forgotten check-out (the day's last sighting at an entrance) records as the last out:
    ``none`` (nothing; time counts up to the last sighting), ``last_sighting`` (the last sighting, time up to it) or
    ``scheduled_end`` (the local time ``scheduled_end`` of that day, or the last sighting when that is later).
    The day keeps ``forgot_checkout`` whichever policy applies, also once it is final.
    ``first_in_photo``: which photo shows the arrival: ``earliest`` (the arrival's own snapshot, or the nearest
    within ``photo_within`` at that door) or ``best_within`` (the snapshot with the highest face quality among the
    person's sightings from the arrival to ``first_in_photo_window`` after it, at any door; the earliest's on a tie).
    The first-in time is the earliest arrival under both.
    """

    timezone: str
    day_starts_at: time = time(4, 0)
    settle_out_after: timedelta = timedelta(minutes=30)
    photo_within: timedelta = timedelta(minutes=5)
    signoff_after: timedelta = timedelta(0)
    last_out: LastOutPolicy = "none"
    scheduled_end: time = time(17, 0)
    first_in_photo: FirstInPhotoPolicy = "earliest"
    first_in_photo_window: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        site_zone(self.timezone)
        if self.day_starts_at.tzinfo is not None or self.scheduled_end.tzinfo is not None:
            raise ValueError("day_starts_at and scheduled_end are local wall-clock times: give them without a tzinfo")
        if min(self.settle_out_after, self.photo_within, self.signoff_after, self.first_in_photo_window) < timedelta(0):
            raise ValueError(
                "settle_out_after, photo_within, signoff_after and first_in_photo_window must not be negative"
            )
        if self.last_out not in LAST_OUT_POLICIES:
            raise ValueError(f"last_out must be one of {', '.join(LAST_OUT_POLICIES)}, got {self.last_out!r}")
        if self.first_in_photo not in FIRST_IN_PHOTO_POLICIES:
            raise ValueError(
                f"first_in_photo must be one of {', '.join(FIRST_IN_PHOTO_POLICIES)}, got {self.first_in_photo!r}"
            )

    @property
    def zone(self) -> ZoneInfo:
        """The site's time zone."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class AttendanceDay:
    """One person's attendance on one local day (``day`` is the local date on which that attendance day begins).

    ``first_in``/``last_out`` are UTC instants, ``first_in_event``/``last_out_event`` the events whose snapshots show
    them. ``sightings`` counts the person's distinct sightings that day. See :func:`compute_days` for the rules.
    ``forgot_checkout`` stays True once the day is final: a forgotten check-out is an outcome of its own
    (:func:`day_status`); ``last_out`` then holds what the last-out policy recorded, if anything.
    """

    person_id: str
    day: date
    first_in: datetime | None
    first_in_event: str | None
    last_out: datetime | None
    last_out_event: str | None
    minutes_on_site: int
    out_settled: bool
    final: bool
    sightings: int
    forgot_checkout: bool


@lru_cache(maxsize=4096)
def _day_start(day: date, starts_at: time, timezone: str) -> datetime:
    """The first instant (UTC) whose local wall clock reads ``day starts_at`` or later.

    A wall time that occurs twice (clocks go back) starts the day at its first occurrence; one that does not occur
    (clocks go forward) starts it at the transition, so every instant belongs to exactly one day.
    """
    zone = ZoneInfo(timezone)
    wall = datetime.combine(day, starts_at)
    start = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if start.astimezone(zone).replace(tzinfo=None) == wall:
        return start
    # In a gap: fold=1 reads the wall time with the offset after the transition, which lands before it.
    low, high = wall.replace(tzinfo=zone, fold=1).astimezone(UTC), start
    lo_us, hi_us = 0, (high - low) // timedelta(microseconds=1)
    while hi_us - lo_us > 1:  # invariant: wall(low + lo_us) < wall, wall(low + hi_us) >= wall
        mid = (lo_us + hi_us) // 2
        if (low + timedelta(microseconds=mid)).astimezone(zone).replace(tzinfo=None) >= wall:
            hi_us = mid
        else:
            lo_us = mid
    return low + timedelta(microseconds=hi_us)


def day_bounds(day: date, rules: AttendanceRules) -> tuple[datetime, datetime]:
    """The UTC instants ``[start, end)`` of one attendance day (23 or 25 hours long on a DST change)."""
    return (
        _day_start(day, rules.day_starts_at, rules.timezone),
        _day_start(day + timedelta(days=1), rules.day_starts_at, rules.timezone),
    )


def local_day(at: datetime, rules: AttendanceRules) -> date:
    """The attendance day an instant belongs to: its local date, or the day before when earlier than the boundary."""
    require_aware(at, "at")
    wall = at.astimezone(rules.zone).date()
    for day in (wall + timedelta(days=1), wall, wall - timedelta(days=1)):
        if _day_start(day, rules.day_starts_at, rules.timezone) <= at:
            return day
    return wall - timedelta(days=2)


def day_is_final(
    day: date,
    roles: Mapping[str, Role],
    rules: AttendanceRules,
    now: datetime,
    delivered_through: Mapping[str, datetime],
    retired: Set[str] = frozenset(),
) -> bool:
    """Whether a day can no longer change: it ended ``signoff_after`` ago and every device delivered past its end.

    ``delivered_through[device]`` is the instant up to which the hub holds every event that device stamped. A device
    missing from it, or behind the day's end (offline across the boundary, its outbox not yet drained), keeps the day
    open, so an absence or a forgotten check-out on a non-final day may still be overturned by a late event. A device
    in ``retired`` (taken out of service) never holds a day open; its sightings still count.
    """
    require_aware(now, "now")
    end = day_bounds(day, rules)[1]
    if now < end + rules.signoff_after:
        return False
    for device in roles:
        if device in retired:
            continue
        through = delivered_through.get(device)
        if through is None:
            return False
        require_aware(through, f"delivered_through[{device!r}]")
        if through < end:
            return False
    return True


def _order(sighting: Sighting) -> tuple[datetime, str, str, str, str, bool]:
    return (
        sighting.at,
        sighting.event_id,
        sighting.device,
        sighting.person_id,
        sighting.type,
        sighting.has_snapshot,
    )


def compute_days(
    sightings: Iterable[Sighting],
    roles: Mapping[str, Role],
    rules: AttendanceRules,
    now: datetime,
    delivered_through: Mapping[str, datetime],
    retired: Set[str] = frozenset(),
) -> list[AttendanceDay]:
    """Attendance days, sorted by day then person, recomputed from the sightings (any order gives the same result).

    Pass every sighting of each day wanted (:func:`day_bounds` gives the range to load); a day with part of its
    sightings is computed from that part. Sightings are taken once per ``event_id``; sightings from devices without
    a role in ``roles`` (no door camera) are ignored. Each person's sightings of one day, in time order:

    - An ``entrance`` or ``both`` sighting while outside opens an on-site interval (while inside it changes
      nothing); an ``exit`` sighting while inside closes it. An ``exit`` while outside (no arrival seen since the
      last exit, e.g. the person came in unseen) adds no time: no arrival is invented. ``minutes_on_site`` is the
      sum of the intervals, floored to whole minutes.
    - An interval still open after the day's last sighting closes at that last sighting. With a ``both`` camera the
      day's last sighting is the departure, so there minutes are ``last - first``; after an entrance with no exit
      (forgotten check-out) the time counts up to the person's last sighting.
    - ``first_in`` is the first ``entrance`` or ``both`` sighting (None when the day has only exits).
    - ``last_out`` is the day's last sighting when it is at an ``exit`` (the last exit) or a ``both`` camera (the
      departure is inferred). When the last sighting is at an ``entrance``, the person never went out: once the day
      has ended ``forgot_checkout`` is True (and stays so when final), and ``last_out`` follows the rules' last-out
      policy (None under ``none``; the last sighting; or the scheduled end, which also counts the time up to it).
    - ``out_settled``: a ``last_out`` holds once ``settle_out_after`` has passed after the day's last sighting with
      no later one, or once the day has ended; until then a later sighting may still move it.
    - ``final``: see :func:`day_is_final`; the day ended ``signoff_after`` ago and every device in ``roles`` but the
      ``retired`` ones delivered past its end.
    - Photos: ``first_in_event``/``last_out_event`` name the arrival/departure sighting itself when it has a
      snapshot, else the nearest sighting (by time, then earlier, then event id) of the same person at the same
      device within ``photo_within`` that has one, else the sighting itself (the hub finds no photo for it). Under
      the ``best_within`` first-in photo policy, ``first_in_event`` is instead the sighting with a snapshot and the
      highest ``quality`` from the arrival to ``first_in_photo_window`` after it (any door; an unknown quality
      counts lowest; on a tie the earlier, then by event id), unless the earliest policy's photo is at least as good.

    A shift that crosses ``day_starts_at`` splits into two days: the first ends inside (a forgotten check-out,
    counted up to its last sighting), the second begins with an exit (no arrival, no time). Sites with night shifts
    put the boundary between the shifts instead (see :class:`AttendanceRules`).
    """
    require_aware(now, "now")
    for device, role in roles.items():
        if role not in ROLES:
            raise ValueError(f"device {device!r}: camera role must be 'entrance', 'exit' or 'both', got {role!r}")
    for device, through in delivered_through.items():
        require_aware(through, f"delivered_through[{device!r}]")
    unique: dict[str, Sighting] = {}
    for sighting in sorted(sightings, key=_order):
        unique.setdefault(sighting.event_id, sighting)
    groups: dict[tuple[date, str], list[Sighting]] = defaultdict(list)
    for sighting in sorted(unique.values(), key=_order):
        if sighting.device in roles:
            groups[(local_day(sighting.at, rules), sighting.person_id)].append(sighting)
    return [
        _compute_day(person_id, day, group, roles, rules, now, delivered_through, retired)
        for (day, person_id), group in sorted(groups.items())
    ]


def _photo(marker: Sighting, group: list[Sighting], rules: AttendanceRules) -> str:
    candidates = [
        s for s in group if s.has_snapshot and s.device == marker.device and abs(s.at - marker.at) <= rules.photo_within
    ]
    if not candidates:
        return marker.event_id
    # nearest in time; the marker itself first on a tie, then the earlier, then by event id (order-independent)
    best = min(candidates, key=lambda s: (abs(s.at - marker.at), s.event_id != marker.event_id, s.at, s.event_id))
    return best.event_id


def _first_in_photo(first_in: Sighting, group: list[Sighting], rules: AttendanceRules) -> str:
    """The event whose snapshot shows the arrival, by the rules' first-in photo policy."""
    earliest = _photo(first_in, group, rules)
    if rules.first_in_photo == "earliest":
        return earliest
    until = first_in.at + rules.first_in_photo_window
    candidates = [s for s in group if s.has_snapshot and first_in.at <= s.at <= until]
    chosen = next((s for s in group if s.event_id == earliest and s.has_snapshot), None)
    for s in sorted(candidates, key=lambda s: (s.at, s.event_id)):
        if chosen is None or _quality(s) > _quality(chosen):
            chosen = s  # strictly better only: on a tie the earliest photo stays
    return chosen.event_id if chosen is not None else earliest


def _quality(sighting: Sighting) -> float:
    return -1.0 if sighting.quality is None else sighting.quality


def _compute_day(
    person_id: str,
    day: date,
    group: list[Sighting],
    roles: Mapping[str, Role],
    rules: AttendanceRules,
    now: datetime,
    delivered_through: Mapping[str, datetime],
    retired: Set[str],
) -> AttendanceDay:
    end = day_bounds(day, rules)[1]
    ended = now >= end
    on_site = timedelta(0)
    inside_since: datetime | None = None
    first_in: Sighting | None = None
    for sighting in group:
        if roles[sighting.device] == "exit":
            if inside_since is not None:
                on_site += sighting.at - inside_since
                inside_since = None
        else:
            if first_in is None:
                first_in = sighting
            if inside_since is None:
                inside_since = sighting.at
    last = group[-1]
    last_out = None if roles[last.device] == "entrance" else last
    forgot = ended and last_out is None
    out_at = last.at
    if forgot and rules.last_out == "scheduled_end":
        out_at = max(last.at, _wall_time_in_day(day, rules.scheduled_end, rules))
    if inside_since is not None:
        on_site += out_at - inside_since
    recorded_out: datetime | None = last_out.at if last_out else None
    out_event = _photo(last_out, group, rules) if last_out else None
    if forgot and rules.last_out != "none":
        recorded_out = out_at
        out_event = _photo(last, group, rules) if rules.last_out == "last_sighting" else None
    return AttendanceDay(
        person_id=person_id,
        day=day,
        first_in=first_in.at if first_in else None,
        first_in_event=_first_in_photo(first_in, group, rules) if first_in else None,
        last_out=recorded_out,
        last_out_event=out_event,
        minutes_on_site=on_site // timedelta(minutes=1),
        out_settled=recorded_out is not None and (forgot or now >= min(last.at + rules.settle_out_after, end)),
        final=day_is_final(day, roles, rules, now, delivered_through, retired),
        sightings=len(group),
        forgot_checkout=forgot,
    )


def _wall_time_in_day(day: date, wall: time, rules: AttendanceRules) -> datetime:
    """The instant (UTC) at which the local wall clock reads ``wall`` within attendance day ``day``."""
    start, end = day_bounds(day, rules)
    on_date = day if wall >= rules.day_starts_at else day + timedelta(days=1)
    at = datetime.combine(on_date, wall).replace(tzinfo=rules.zone).astimezone(UTC)
    return min(max(at, start), end)


AttendanceStatus = Literal["open", "provisional", "forgot_checkout", "final"]


def day_status(result: AttendanceDay) -> AttendanceStatus:
    """The outcome stored and shown for a day (whether it is signed off is ``result.final``, kept beside it).

    ``forgot_checkout`` wins over ``final`` (it must stay visible after sign-off); else ``final`` once signed off,
    ``provisional`` while a last-out may still move, ``open`` otherwise.
    """
    if result.forgot_checkout:
        return "forgot_checkout"
    if result.final:
        return "final"
    if result.last_out is not None and not result.out_settled:
        return "provisional"
    return "open"
