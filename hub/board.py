"""The presence board and attendance days the hub keeps up to date from stored sightings, and publishes retained."""

from __future__ import annotations

import json
import logging
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
from hub.store import Device, ReceivedEvent

log = logging.getLogger("rollcall.hub")

PresenceListener = Callable[[datetime, wire.Presence], None]
"""Told every board the hub publishes, with the time it was made (Home Assistant's person states follow it)."""


def _role(value: str) -> Role:
    return "entrance" if value == "entrance" else "exit" if value == "exit" else "both"


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

    def _store(self, state: PresenceState, event_id: str | None, now: datetime) -> None:
        store = self.context.store
        self._presence[state.person_id] = state
        store.set_presence(state.person_id, state.state, state.since, state.door, event_id, now)
        store.set_meta(f"presence:{state.person_id}", json.dumps(state.to_dict()))

    def apply_events(
        self, events: list[ReceivedEvent], inserted: set[str], now: datetime, roles: dict[str, Role]
    ) -> None:
        """Move presence on by the newly stored events, recompute their people's days, publish a changed board.

        ``events`` must be those that may count (see :class:`EventWindow`): the caller leaves the others out.
        """
        with self.context.store.write_batch():  # one commit for the batch's presence and attendance rows
            changed = self._apply_events(events, inserted, now, roles)
        if changed:
            self.publish(now)

    def _apply_events(
        self, events: list[ReceivedEvent], inserted: set[str], now: datetime, roles: dict[str, Role]
    ) -> bool:
        """Presence and attendance after the events; whether anyone's presence changed."""
        store = self.context.store
        changed = False
        days: set[tuple[str, date]] = set()
        devices = store.list_devices()
        for received in sorted(events, key=lambda r: r.event.at):
            event = received.event
            if event.event_id not in inserted or event.person_id is None:
                continue
            if store.get_person(event.person_id) is None:
                continue  # a gallery older than a removal: the event is kept, but it names nobody we know
            sighting = Sighting(
                event.event_id, event.device, event.person_id, event.at, event.type, event.has_snapshot, event.quality
            )
            role = roles.get(event.device, "both")
            before = self._presence.get(event.person_id)
            after = apply_sighting(before, sighting, role, self.presence_rules)
            if after != before:
                self._store(after, event.event_id, now)
                changed = True
            days.add((event.person_id, local_day(event.at, self.attendance_rules)))
        for person_id, day in days:
            self.recompute_attendance(person_id, day, now, roles, devices)
        return changed

    def expire(self, now: datetime) -> None:
        """Mark out whoever was not seen for the presence timeout; publish the board when someone was."""
        timed_out = expire(self._presence.values(), now, self.presence_rules)
        with self.context.store.write_batch():
            for state in timed_out:
                self._store(state, None, now)
        if timed_out:
            self.publish(now)

    def forget(self, person_id: str) -> None:
        """After an erasure: the person's presence is gone, in memory and in the store's meta table."""
        self._presence.pop(person_id, None)
        self.context.store.set_meta(f"presence:{person_id}", "")

    # --- attendance --------------------------------------------------------------------------------------------------

    def recompute_attendance(
        self,
        person_id: str,
        day: date,
        now: datetime,
        roles: dict[str, Role] | None = None,
        devices: list[Device] | None = None,
    ) -> None:
        """Recompute one person's day from its stored sightings (order-independent, so late events just work).

        ``roles`` and ``devices`` as the caller read them for many people at once; read here when not given.
        """
        store = self.context.store
        roles = roles if roles is not None else self.roles()
        start, end = day_bounds(day, self.attendance_rules)
        sightings = [
            Sighting(event_id, device, person_id, at, "left" if kind == "left" else "seen", has_snapshot, quality)
            for event_id, device, kind, at, has_snapshot, quality in store.sightings(
                person_id, start, end, max_ahead_s=self.window.max_ahead.total_seconds()
            )
        ]
        devices = devices if devices is not None else store.list_devices()
        delivered = {d.id: d.delivered for d in devices if d.delivered is not None}
        retired = {d.id for d in devices if d.retired_at is not None}
        for result in compute_days(sightings, roles, self.attendance_rules, now, delivered, retired):
            status = day_status(result)
            store.set_attendance(
                result.person_id,
                result.day,
                result.first_in,
                result.last_out,
                result.minutes_on_site * 60.0,
                status,
                now,
                first_in_event=result.first_in_event,
                last_out_event=result.last_out_event,
                final=result.final,
            )

    def sign_off(self, now: datetime) -> int:
        """The sign-off sweep: recompute every stored day that ended and is not final yet; return how many became final.

        Run at start-up and on a timer: a day becomes final once it ended ``signoff_after`` ago and every active
        device delivered past its end, without waiting for a further event of that person.
        """
        store = self.context.store
        rules = self.attendance_rules
        ended_before = local_day(now, rules)  # the days before today have ended
        pending = store.unsigned_days(ended_before)
        if not pending:
            return 0
        roles = self.roles()
        devices = store.list_devices()
        delivered = {d.id: d.delivered for d in devices if d.delivered is not None}
        retired = {d.id for d in devices if d.retired_at is not None}
        finals: dict[date, bool] = {}
        with store.write_batch():  # one commit for the sweep, not one per person
            for person_id, day, updated_at in pending:
                if day not in finals:
                    finals[day] = day_is_final(day, roles, rules, now, delivered, retired)
                # A day that cannot be final yet is recomputed once after its end (a forgotten check-out shows), then
                # left alone until a device catches up: a dead device must not cost a recompute of everyone every
                # pass.
                if finals[day] or updated_at < day_bounds(day, rules)[1]:
                    self.recompute_attendance(person_id, day, now, roles, devices)
        signed = len(pending) - len(store.unsigned_days(ended_before))
        if signed:
            log.info("sign-off: %d of %d open past days are final", signed, len(pending))
        return signed

    # --- the published board -----------------------------------------------------------------------------------------

    def payload(self, now: datetime) -> wire.Presence:
        """The presence board as published."""
        people = {p.id: p.name for p in self.context.store.list_people()}
        entries = []
        for person_id, name in sorted(people.items()):
            state = self._presence.get(person_id)
            entries.append(
                wire.PresenceEntry(
                    person_id=person_id,
                    name=name or person_id,
                    state=state.state if state else "unknown",
                    since=state.since if state else None,
                    door=state.door if state else None,
                )
            )
        return wire.Presence(at=now, people=entries)

    def publish(self, now: datetime) -> None:
        """Publish the presence board, retained, then tell the listeners (Home Assistant's person states)."""
        board = self.payload(now)
        self.context.publish(self.context.topics.hub_presence(), board, qos=1, retain=True)
        for listener in self._listeners:
            listener(now, board)
