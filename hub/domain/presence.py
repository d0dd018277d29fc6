"""Presence: who is in or out, since when and at which door, from door sightings and camera roles (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, TypeAlias, get_args

from edge.protocol.times import as_utc, require_aware

if TYPE_CHECKING:
    from edge.protocol.wire import Event

Role: TypeAlias = Literal["entrance", "exit", "both"]
"""What a sighting at a door camera means: came in (``entrance``), went out (``exit``), or either (``both``)."""
ROLES: frozenset[str] = frozenset(get_args(Role))

SightingType: TypeAlias = Literal["seen", "left"]
"""``seen``: the device named a face on a track; ``left``: that track ended."""
SIGHTING_TYPES: frozenset[str] = frozenset(get_args(SightingType))

PresenceValue: TypeAlias = Literal["in", "out", "unknown"]
PRESENCE_VALUES: frozenset[str] = frozenset(get_args(PresenceValue))


@dataclass(frozen=True, slots=True)
class Sighting:
    """One named person at one door device at one time: the part of a wire ``Event`` that presence and attendance use.

    Only events that name a person become sightings (an unknown face has nobody to be present). ``at`` is kept in UTC.
    ``quality`` is the event's face quality score (0..1, the best frame of the track; None when not known): the
    ``best_within`` first-in photo policy picks by it.
    """

    event_id: str
    device: str
    person_id: str
    at: datetime
    type: SightingType
    has_snapshot: bool
    quality: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", as_utc(self.at, f"sighting {self.event_id}: at"))  # one clock for every record
        if self.type not in SIGHTING_TYPES:
            raise ValueError(f"sighting {self.event_id}: type must be 'seen' or 'left', got {self.type!r}")


def sighting_from_event(event: Event) -> Sighting | None:
    """The sighting a wire event stands for, or None for an unknown face (``person_id`` None)."""
    if event.person_id is None:
        return None
    return Sighting(
        event_id=event.event_id,
        device=event.device,
        person_id=event.person_id,
        at=event.at,
        type=event.type,
        has_snapshot=event.has_snapshot,
        quality=event.quality,
    )


@dataclass(frozen=True, slots=True)
class PresenceRules:
    """How presence is derived.

    ``timeout``: a person who is ``in`` and has not been seen for this long has left without being seen. They become
    ``out`` with ``since = last_seen`` (the last moment there is evidence they were on site; the real departure lies
    somewhere in ``[last_seen, last_seen + timeout]`` and ``last_seen`` is the only time actually observed) and
    ``door = None`` (no door saw them go). The same timeout makes a sighting after such a gap start a new visit.
    """

    timeout: timedelta = timedelta(hours=12)

    def __post_init__(self) -> None:
        if self.timeout <= timedelta(0):
            raise ValueError(f"presence timeout must be positive, got {self.timeout}")


@dataclass(frozen=True, slots=True)
class EventWindow:
    """Which event times may move presence and attendance, judged against the hub's clock when the event arrives.

    ``max_ahead``: a device clock may run this far ahead of the hub's (NTP drift, a slow first sync). A sighting
    dated further ahead comes from a clock gone wrong: applied, one event dated 2099 would keep its person ``in``
    "since 2099" and hide every real sighting after it (presence only moves forward in time).
    ``max_behind``: the retention of events; an older sighting belongs to a day whose record is already gone.

    Such an event is still stored and acked (nothing accepted is lost); it only does not count.
    """

    max_ahead: timedelta = timedelta(minutes=5)
    max_behind: timedelta = timedelta(days=180)

    def __post_init__(self) -> None:
        if self.max_ahead < timedelta(0) or self.max_behind <= timedelta(0):
            raise ValueError("max_ahead must not be negative and max_behind must be positive")

    def refusal(self, at: datetime, received_at: datetime) -> str | None:
        """Why a sighting dated ``at`` that arrived at ``received_at`` must not count; None when it may."""
        require_aware(at, "at")
        require_aware(received_at, "received_at")
        if at - received_at > self.max_ahead:
            return (
                f"dated {_iso(at)}, {_span(at - received_at)} ahead of the hub's clock (more than the "
                f"{_span(self.max_ahead)} a device clock may drift): the device's clock is wrong; set it (NTP)"
            )
        if received_at - at > self.max_behind:
            return (
                f"dated {_iso(at)}, {_span(received_at - at)} before it arrived (beyond the "
                f"{_span(self.max_behind)} retention of events)"
            )
        return None


def _span(delta: timedelta) -> str:
    """A duration as a person reads it: 40 s, 12 min, 5 h, 27032 days."""
    seconds = delta.total_seconds()
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


@dataclass(frozen=True, slots=True)
class PresenceState:
    """One person's presence: a plain value the hub persists with :meth:`to_dict` and reads back after a restart.

    - ``unknown``: never seen (``since``, ``door`` and ``last_seen`` are None).
    - ``in``: ``since`` is when this visit began, ``door`` the device that saw it begin.
    - ``out``: ``since`` is when they left; ``door`` the exit that saw it, or None when they left unseen (timeout).

    ``last_seen`` is the newest sighting of the person at any door, whatever it meant.
    """

    person_id: str
    state: PresenceValue
    since: datetime | None
    door: str | None
    last_seen: datetime | None

    def __post_init__(self) -> None:
        who = f"presence of {self.person_id!r}"
        if self.state not in PRESENCE_VALUES:
            raise ValueError(f"{who}: state must be 'in', 'out' or 'unknown', got {self.state!r}")
        for name in ("since", "last_seen"):
            value = getattr(self, name)
            if value is not None:
                require_aware(value, f"{who}: {name}")
        if self.state == "unknown":
            if self.since is not None or self.door is not None or self.last_seen is not None:
                raise ValueError(f"{who}: an unknown state has no since, door or last_seen")
            return
        if self.since is None or self.last_seen is None:
            raise ValueError(f"{who}: state {self.state!r} needs since and last_seen")
        if self.since > self.last_seen:
            raise ValueError(f"{who}: since {self.since.isoformat()} is after last_seen {self.last_seen.isoformat()}")
        if self.state == "in" and self.door is None:
            raise ValueError(f"{who}: state 'in' needs the door that saw the visit begin")

    @classmethod
    def unknown(cls, person_id: str) -> PresenceState:
        """The state of a person nobody has seen yet."""
        return cls(person_id, "unknown", None, None, None)

    def to_dict(self) -> dict[str, str | None]:
        """A JSON-ready dict; times are ISO 8601 in UTC."""
        return {
            "person_id": self.person_id,
            "state": self.state,
            "since": _iso(self.since),
            "door": self.door,
            "last_seen": _iso(self.last_seen),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PresenceState:
        """Read back what :meth:`to_dict` wrote; raises ValueError naming the field that is wrong."""
        fields = ("person_id", "state", "since", "door", "last_seen")
        missing = [name for name in fields if name not in data]
        unknown = sorted(set(data) - set(fields))
        if missing or unknown:
            raise ValueError(f"presence record: missing fields {missing}, unknown fields {unknown}")
        person_id, state, door = data["person_id"], data["state"], data["door"]
        if not isinstance(person_id, str) or not person_id:
            raise ValueError(f"presence record: person_id must be a non-empty string, got {person_id!r}")
        if state not in PRESENCE_VALUES:
            raise ValueError(f"presence record: state must be 'in', 'out' or 'unknown', got {state!r}")
        if door is not None and not isinstance(door, str):
            raise ValueError(f"presence record: door must be a string or null, got {door!r}")
        value: PresenceValue = "in" if state == "in" else "out" if state == "out" else "unknown"
        return cls(
            person_id, value, _parse_time(data["since"], "since"), door, _parse_time(data["last_seen"], "last_seen")
        )


# The stored form (meta ``presence:<person>``) keeps ``+00:00``, so what older hubs wrote reads back the same.
def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _parse_time(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"presence record: {name} must be an ISO 8601 string or null, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"presence record: {name} is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"presence record: {name} has no UTC offset: {value!r}")
    return parsed.astimezone(UTC)


def apply_sighting(state: PresenceState | None, sighting: Sighting, role: Role, rules: PresenceRules) -> PresenceState:
    """The person's presence after one more sighting (``state`` None = never seen before).

    Rules:

    - The sighting implies ``in`` at an ``entrance`` or ``both`` camera and ``out`` at an ``exit`` camera, whether it
      is ``seen`` or ``left`` (both mean the person was at that door then).
    - A ``both`` camera (one camera at a door used both ways) does not toggle. Toggling would turn one missed or
      doubled track (a person lingering at the door is tracked twice; one passing in a crowd is missed) into a
      wrong state for the rest of the day. A sighting there means the person is at the door now, so on site: ``in``.
      The departure is inferred later: by attendance (the day's last sighting, settled after ``settle_out_after``)
      and by presence (``timeout`` without a sighting, see :func:`expire`).
    - Presence only moves forward in time: a sighting at or before ``last_seen`` (a late event from a device that
      was offline, or a duplicate) changes nothing. Attendance, which recomputes from all sightings, places it.
    - A newer sighting that implies the current state keeps ``since`` and ``door`` (the visit or absence goes on)
      and only moves ``last_seen``. It starts a new ``since``/``door`` when the state changes, when the current
      ``out`` was inferred by a timeout (now a door saw it), or when the current ``in`` had gone ``timeout`` without
      a sighting (the person left unseen in between, whether or not :func:`expire` ran meanwhile).
    """
    if role not in ROLES:
        raise ValueError(f"camera role must be 'entrance', 'exit' or 'both', got {role!r}")
    current = state if state is not None else PresenceState.unknown(sighting.person_id)
    if current.person_id != sighting.person_id:
        raise ValueError(f"sighting {sighting.event_id} is of {sighting.person_id!r}, not {current.person_id!r}")
    if current.last_seen is not None and sighting.at <= current.last_seen:
        return current
    implied: PresenceValue = "out" if role == "exit" else "in"
    lapsed = current.last_seen is not None and sighting.at - current.last_seen >= rules.timeout
    continues = current.state == implied and current.door is not None and not (implied == "in" and lapsed)
    if continues:
        return replace(current, last_seen=sighting.at)
    return PresenceState(sighting.person_id, implied, since=sighting.at, door=sighting.device, last_seen=sighting.at)


def expire(states: Iterable[PresenceState], now: datetime, rules: PresenceRules) -> list[PresenceState]:
    """The states that time out at ``now``, as their new values (in input order); the others are unchanged.

    A person ``in`` whose ``last_seen`` is ``timeout`` or more before ``now`` left without being seen: ``out`` with
    ``since = last_seen`` and ``door = None``.
    """
    require_aware(now, "now")
    return [
        replace(state, state="out", since=state.last_seen, door=None)
        for state in states
        if state.state == "in" and state.last_seen is not None and now - state.last_seen >= rules.timeout
    ]


def next_expiry(states: Iterable[PresenceState], rules: PresenceRules) -> datetime | None:
    """When :func:`expire` will next change something if no sighting arrives (None: nobody is ``in``)."""
    times = [state.last_seen + rules.timeout for state in states if state.state == "in" and state.last_seen]
    return min(times, default=None)
