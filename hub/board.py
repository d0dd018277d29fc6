"""The presence board and attendance days the hub keeps up to date from stored sightings, and publishes retained."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta

from edge.protocol import wire
from hub.context import HubContext
from hub.domain.attendance import AttendanceRules, compute_days, day_bounds, day_is_final, day_status, local_day
from hub.domain.presence import (
    EventWindow,
    PresenceRules,
    PresenceState,
    Role,
    Sighting,
    apply_sighting,
    expire,
)
from hub.store import AttendanceRow, Device, ReceivedEvent

log = logging.getLogger("rollcall.hub")

PresenceListener = Callable[[datetime, wire.Presence], None]
"""Told every board the hub publishes, with the time it was made (Home Assistant's person states follow it)."""

PUBLISH_EVERY_S = 0.1
"""The least time between two boards published after presence changes (a burst of batches makes one board each
``PUBLISH_EVERY_S``, the latest state; the writer publishes a pending board as soon as it is due). A board of 10,000
people costs the hub about 3 ms (rows are encoded once per change); at 0.2 s the wait for the next board was most of
the rush's presence latency. Subscribers that cannot keep up decode the newest only (the TUI: ``tui.live``)."""


def _role(value: str) -> Role:
    return "entrance" if value == "entrance" else "exit" if value == "exit" else "both"


def _deliveries(devices: list[Device]) -> tuple[dict[str, datetime], set[str]]:
    """(device -> the instant it delivered everything up to, the retired devices): what sign-off needs of them."""
    delivered = {}
    for device in devices:
        through = device.delivered
        if through is not None:
            delivered[device.id] = through
    return delivered, {d.id for d in devices if d.retired_at is not None}


class PresenceBoard:
    """Everyone's presence (held in memory, stored on every change) and their attendance days (recomputed)."""

    def __init__(self, context: HubContext) -> None:
        config = context.config
        self.context = context
        self.presence_rules = PresenceRules(timeout=timedelta(hours=config.attendance.presence_timeout_h))
        self.attendance_rules = AttendanceRules(
            timezone=config.site.timezone,
            day_starts_at=config.attendance.day_starts_at,
            settle_out_after=timedelta(minutes=config.attendance.settle_out_after_min),
            signoff_after=timedelta(minutes=config.attendance.signoff_after_min),
            last_out=config.attendance.last_out,
            scheduled_end=config.attendance.scheduled_end,
            first_in_photo=config.attendance.first_in_photo,
            first_in_photo_window=timedelta(minutes=config.attendance.first_in_photo_window_min),
        )
        self.window = EventWindow(
            max_ahead=timedelta(seconds=config.attendance.max_clock_ahead_s),
            max_behind=timedelta(days=config.retention.events_days),
        )
        self._presence: dict[str, PresenceState] = {}
        self._listeners: list[PresenceListener] = []
        self.publish_every_s = PUBLISH_EVERY_S
        # The published board, kept in memory: its people (id, name) by id as the store last listed them, and per
        # person the entry and its encoded JSON, made again only when their presence or name changes.
        self._people: list[tuple[str, str]] = []
        self._people_signature: tuple[object, ...] | None = None
        self._known: set[str] = set()
        """Ids the store has a row for (erased tombstones too): events naming anybody else are stored, not counted."""
        self._entries: dict[str, wire.PresenceEntry] = {}
        self._rows: dict[str, bytes] = {}
        self._pending = False
        self._published_at = -math.inf  # monotonic
        self._due_since: float | None = None
        """When (monotonic) an attendance recompute first waited since the last one settled them all."""
        self._load()

    def after_publish(self, listener: PresenceListener) -> None:
        """Call ``listener`` with every board published from now on."""
        self._listeners.append(listener)

    def roles(self) -> dict[str, Role]:
        """Every known device's camera role (retired ones too: their sightings still count)."""
        return {device.id: _role(device.role) for device in self.context.store.list_devices()}

    def retired(self) -> set[str]:
        """The devices taken out of service: they hold no day open."""
        return {device.id for device in self.context.store.list_devices() if device.retired_at is not None}

    # --- presence ----------------------------------------------------------------------------------------------------

    def _load(self) -> None:
        store = self.context.store
        self._known.update(store.person_ids())  # one read, not one per person's first event
        if store.attendance_due(1):  # left by a hub that stopped before it recomputed them
            self._due_since = time.monotonic()
        for row in store.presence():
            raw = store.get_meta(f"presence:{row.person_id}")
            if raw:
                try:
                    self._presence[row.person_id] = PresenceState.from_dict(json.loads(raw))
                except ValueError:
                    log.warning("stored presence of %s is unreadable; starting from the table row", row.person_id)

    def state(self, person_id: str) -> PresenceState | None:
        """One person's presence as the hub holds it now."""
        return self._presence.get(person_id)

    def _store(self, states: dict[str, tuple[PresenceState, str | None]], now: datetime) -> None:
        """Keep and store changed presences (person id -> (state, the event that made it)) in two statements."""
        if not states:
            return
        store = self.context.store
        for person_id, (state, _) in states.items():
            self._presence[person_id] = state
            self._entries.pop(person_id, None)
            self._rows.pop(person_id, None)
        store.set_presences(((s.person_id, s.state, s.since, s.door, event_id) for s, event_id in states.values()), now)
        store.set_metas((f"presence:{p}", json.dumps(s.to_dict())) for p, (s, _) in states.items())

    def _is_known(self, person_id: str) -> bool:
        """Whether the store has this person (an erased one too); asked once per id, then remembered."""
        if person_id in self._known:
            return True
        if self.context.store.get_person(person_id) is None:
            return False
        self._known.add(person_id)
        self.people_changed()  # added behind the board's back (a tool, a test): the board lists them too
        return True

    def apply_events(
        self, events: list[ReceivedEvent], inserted: set[str], now: datetime, roles: dict[str, Role]
    ) -> None:
        """Move presence on by the newly stored events and publish a changed board; their days become due.

        ``events`` must be those that may count (see :class:`EventWindow`): the caller leaves the others out. The
        attendance of the days they touch is recomputed by :meth:`settle_attendance` (the writer runs it when no
        messages wait), so a burst of arrivals moves the board without waiting for everybody's day.
        """
        store = self.context.store
        with store.write_batch():  # one commit for the batch's presence rows
            changed = self._apply_presence(events, inserted, now, roles)
        if changed:
            self.changed()  # the board goes out before the attendance is worked out: the board is what people watch

    def note_days(self, events: list[ReceivedEvent]) -> None:
        """Mark the (person, day) pairs of ``events`` due for an attendance recompute (in the caller's transaction).

        The ingest marks them in the transaction that stores the events, so nothing stored can miss its recompute.
        """
        rules = self.attendance_rules
        pairs = {(p, local_day(r.event.at, rules)) for r in events if (p := r.event.person_id) is not None}
        if pairs:
            self.context.store.mark_attendance_due(sorted(pairs))
            if self._due_since is None:
                self._due_since = time.monotonic()

    def attendance_due_for_s(self) -> float | None:
        """How long (seconds) the oldest attendance recompute has waited; None when none waits."""
        return None if self._due_since is None else time.monotonic() - self._due_since

    def settle_attendance(self, now: datetime, limit: int | None = None) -> int:
        """Recompute the days waiting in the store (the longest waiting first, at most ``limit``); how many.

        The sightings of each day's people are read in a few statements, the rows stored and the pairs cleared in
        one commit.
        """
        store = self.context.store
        due = store.attendance_due(limit)
        if not due:
            self._due_since = None
            return 0
        roles = self.roles()
        deliveries = _deliveries(store.list_devices())
        by_day: dict[date, list[str]] = {}
        for person_id, day in due:
            if self._is_known(person_id):  # an event naming nobody stored (a gallery older than a removal): no day
                by_day.setdefault(day, []).append(person_id)
        rows: list[AttendanceRow] = []
        for day, people in by_day.items():
            start, end = day_bounds(day, self.attendance_rules)
            found = store.sightings_of(people, start, end, max_ahead_s=self.window.max_ahead.total_seconds())
            for person_id in people:
                rows += self._attendance(person_id, day, now, roles, deliveries, found[person_id])
        with store.write_batch():
            store.set_attendances(rows)
            store.clear_attendance_due(due)
        if limit is None or len(due) < limit:
            self._due_since = None
        return len(due)

    def _apply_presence(
        self, events: list[ReceivedEvent], inserted: set[str], now: datetime, roles: dict[str, Role]
    ) -> bool:
        """Presence after the events: whether anyone's changed."""
        changed: dict[str, tuple[PresenceState, str | None]] = {}
        for received in sorted(events, key=lambda r: r.event.at):
            event = received.event
            if event.event_id not in inserted or event.person_id is None:
                continue
            if not self._is_known(event.person_id):
                continue  # a gallery older than a removal: the event is kept, but it names nobody we know
            sighting = Sighting(
                event.event_id, event.device, event.person_id, event.at, event.type, event.has_snapshot, event.quality
            )
            role = roles.get(event.device, "both")
            before = changed[event.person_id][0] if event.person_id in changed else self._presence.get(event.person_id)
            after = apply_sighting(before, sighting, role, self.presence_rules)
            if after != before:
                changed[event.person_id] = (after, event.event_id)
        self._store(changed, now)
        return bool(changed)

    def expire(self, now: datetime) -> None:
        """Mark out whoever was not seen for the presence timeout; publish the board when someone was."""
        timed_out = expire(self._presence.values(), now, self.presence_rules)
        if timed_out:
            with self.context.store.write_batch():
                self._store({state.person_id: (state, None) for state in timed_out}, now)
            self.changed()

    def forget(self, person_id: str) -> None:
        """After an erasure: the person's presence is gone, in memory and in the store's meta table."""
        self.people_changed()
        self._presence.pop(person_id, None)
        self._entries.pop(person_id, None)
        self._rows.pop(person_id, None)
        self.context.store.set_meta(f"presence:{person_id}", "")

    # --- attendance --------------------------------------------------------------------------------------------------

    def _attendance(
        self,
        person_id: str,
        day: date,
        now: datetime,
        roles: dict[str, Role],
        deliveries: tuple[dict[str, datetime], set[str]],
        stored: list[tuple[str, str, str, datetime, bool, float | None]] | None = None,
    ) -> list[AttendanceRow]:
        """One person's day as computed from its stored sightings (``stored``: read already), as the rows to store."""
        if stored is None:
            start, end = day_bounds(day, self.attendance_rules)
            stored = self.context.store.sightings(
                person_id, start, end, max_ahead_s=self.window.max_ahead.total_seconds()
            )
        sightings = [
            Sighting(event_id, device, person_id, at, "left" if kind == "left" else "seen", has_snapshot, quality)
            for event_id, device, kind, at, has_snapshot, quality in stored
        ]
        delivered, retired = deliveries
        return [
            AttendanceRow(
                result.person_id,
                result.day,
                result.first_in,
                result.last_out,
                result.minutes_on_site * 60.0,
                day_status(result),
                now,
                first_in_event=result.first_in_event,
                last_out_event=result.last_out_event,
                final=result.final,
            )
            for result in compute_days(sightings, roles, self.attendance_rules, now, delivered, retired)
        ]

    def sign_off(self, now: datetime) -> int:
        """The sign-off sweep: recompute every stored day that ended and is not final yet; return how many became final.

        Run at start-up and on a timer: a day becomes final once it ended ``signoff_after`` ago and every active
        device delivered past its end, without waiting for a further event of that person.
        """
        store = self.context.store
        rules = self.attendance_rules
        ended_before = local_day(now, rules)  # the days before today have ended
        # Days that new events changed are recomputed before they are judged; those that became final then count.
        due = {(p, d) for p, d in store.attendance_due() if d < ended_before and self._is_known(p)}
        self.settle_attendance(now)
        pending = store.unsigned_days(ended_before)
        settled_final = len(due - {(p, d) for p, d, _ in pending})
        if not pending:
            return settled_final
        roles = self.roles()
        devices = store.list_devices()
        delivered, retired = _deliveries(devices)
        finals: dict[date, bool] = {}
        rows: list[AttendanceRow] = []
        for person_id, day, updated_at in pending:
            if day not in finals:
                finals[day] = day_is_final(day, roles, rules, now, delivered, retired)
            # A day that cannot be final yet is recomputed once after its end (a forgotten check-out shows), then
            # left alone until a device catches up: a dead device must not cost a recompute of everyone every pass.
            if finals[day] or updated_at < day_bounds(day, rules)[1]:
                rows += self._attendance(person_id, day, now, roles, (delivered, retired))
        with store.write_batch():  # one commit and one statement for the sweep, not one per person
            store.set_attendances(rows)
        signed = len(pending) - len(store.unsigned_days(ended_before)) + settled_final
        if signed:
            log.info("sign-off: %d of %d open past days are final", signed, len(pending) + settled_final)
        return signed

    # --- the published board -----------------------------------------------------------------------------------------

    def people_changed(self) -> None:
        """People were added, renamed or erased: the next board reads their names again."""
        self._people_signature = None

    def _refresh_people(self) -> None:
        """Follow the people table (added, renamed, erased by the API, a tool or a test).

        A cheap signature of the table decides whether the names are read again; then only the rows of people whose
        name changed are made again.
        """
        store = self.context.store
        signature = store.people_signature()
        if signature == self._people_signature:
            return
        self._people_signature = signature
        people = store.people_names()
        if people == self._people:
            return
        before = dict(self._people)
        now_named = dict(people)
        for person_id in before.keys() | now_named.keys():
            if before.get(person_id) != now_named.get(person_id):
                self._entries.pop(person_id, None)
                self._rows.pop(person_id, None)
        self._known.update(now_named)
        self._people = people

    def _entry(self, person_id: str, name: str) -> wire.PresenceEntry:
        entry = self._entries.get(person_id)
        if entry is None:
            state = self._presence.get(person_id)
            entry = self._entries[person_id] = wire.PresenceEntry(
                person_id=person_id,
                name=name or person_id,
                state=state.state if state else "unknown",
                since=state.since if state else None,
                door=state.door if state else None,
            )
        return entry

    def payload(self, now: datetime) -> wire.Presence:
        """The presence board as published: everybody not erased, by person id."""
        self._refresh_people()
        return wire.Presence(at=now, people=[self._entry(p, name) for p, name in self._people])

    def encoded(self, now: datetime) -> bytes:
        """The board's wire bytes, exactly ``wire.encode(self.payload(now))``, from the rows encoded before.

        A board of 10,000 people is about 1 MB; building and encoding it whole took a quarter of a second, so each
        person's row is encoded once per change and the board is joined from the rows.
        """
        self._refresh_people()
        rows = self._rows
        parts = []
        for person_id, name in self._people:
            row = rows.get(person_id)
            if row is None:
                row = rows[person_id] = self._entry(person_id, name).model_dump_json().encode()
            parts.append(row)
        head = wire.encode(wire.Presence(at=now, people=[]))
        if not head.endswith(b"[]}"):  # the people list must be the last field for the rows to be spliced in
            raise AssertionError(f"unexpected presence encoding {head!r}")
        return b"".join((head[:-2], b",".join(parts), b"]}"))

    def changed(self) -> None:
        """Presence changed: publish the board now if the last one is ``publish_every_s`` old, else when it is."""
        self._pending = True
        self.publish_if_due()

    def due_in(self) -> float | None:
        """Seconds until a pending board is due (0: now); None when no board is pending."""
        if not self._pending:
            return None
        return max(0.0, self._published_at + self.publish_every_s - time.monotonic())

    def publish_if_due(self) -> bool:
        """Publish a pending board once it is due (the writer calls this between batches); whether it did."""
        if self.due_in() != 0.0:
            return False
        self.publish(self.context.clock())
        return True

    def publish(self, now: datetime) -> None:
        """Publish the presence board (the latest state), retained, then tell the listeners (Home Assistant)."""
        data = self.encoded(now)
        self._pending = False
        self._published_at = time.monotonic()
        self.context.publish(self.context.topics.hub_presence(), data, qos=1, retain=True)
        if self._listeners:
            board = self.payload(now)
            for listener in self._listeners:
                listener(now, board)
