"""Stored presence (one row per person) and attendance (one row per person per site-local day)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from hub.store.core import StoreCore, read_time, read_time_or_none, stored_time, stored_time_or_none
from hub.store.schema import transaction


@dataclass(frozen=True, slots=True)
class PresenceRow:
    """One person's presence as stored."""

    person_id: str
    state: str
    since: datetime | None
    door: str | None
    event_id: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AttendanceRow:
    """One person's attendance on one day."""

    person_id: str
    day: date
    first_in: datetime | None
    last_out: datetime | None
    present_s: float
    status: str | None
    updated_at: datetime
    first_in_event: str | None = None
    last_out_event: str | None = None
    final: bool = False


class AttendanceStore(StoreCore):
    """Presence and attendance as the hub last computed them (the rules live in :mod:`hub.domain`)."""

    def set_presence(
        self,
        person_id: str,
        state: Literal["in", "out", "unknown"],
        since: datetime | None,
        door: str | None,
        event_id: str | None,
        now: datetime,
    ) -> None:
        """Store one person's presence (replacing the previous one)."""
        with transaction(self.db) as tx:
            tx.execute(
                "INSERT INTO presence (person_id, state, since, door, event_id, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(person_id) DO UPDATE SET state = excluded.state, since = excluded.since, "
                "door = excluded.door, event_id = excluded.event_id, updated_at = excluded.updated_at",
                (person_id, state, stored_time_or_none(since), door, event_id, stored_time(now)),
            )

    def set_presences(
        self,
        rows: Iterable[tuple[str, Literal["in", "out", "unknown"], datetime | None, str | None, str | None]],
        now: datetime,
    ) -> None:
        """Store many people's presence at once: (person_id, state, since, door, event_id) each, as ``set_presence``."""
        stamp = stored_time(now)
        with transaction(self.db) as tx:
            tx.executemany(
                "INSERT INTO presence (person_id, state, since, door, event_id, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(person_id) DO UPDATE SET state = excluded.state, since = excluded.since, "
                "door = excluded.door, event_id = excluded.event_id, updated_at = excluded.updated_at",
                [(p, s, stored_time_or_none(since), d, e, stamp) for p, s, since, d, e in rows],
            )

    def presence(self) -> list[PresenceRow]:
        """Every stored presence, by person id."""
        rows = self.db.conn.execute(
            "SELECT person_id, state, since, door, event_id, updated_at FROM presence ORDER BY person_id"
        )
        return [PresenceRow(p, s, read_time_or_none(since), d, e, read_time(u)) for p, s, since, d, e, u in rows]

    def set_attendance(
        self,
        person_id: str,
        day: date,
        first_in: datetime | None,
        last_out: datetime | None,
        present_s: float,
        status: str | None,
        now: datetime,
        first_in_event: str | None = None,
        last_out_event: str | None = None,
        final: bool = False,
    ) -> None:
        """Store one person's attendance for one (site-local) day, replacing the previous figures.

        ``status`` is the outcome (open, provisional, forgot_checkout, final), ``final`` whether it is signed off.
        """
        self.set_attendances(
            [
                AttendanceRow(
                    person_id, day, first_in, last_out, present_s, status, now, first_in_event, last_out_event, final
                )
            ]
        )

    def set_attendances(self, rows: Iterable[AttendanceRow]) -> None:
        """Store many attendance days at once (each as :meth:`set_attendance`, ``updated_at`` its ``now``)."""
        with transaction(self.db) as tx:
            tx.executemany(
                "INSERT INTO attendance (person_id, day, first_in, last_out, present_s, status, updated_at, "
                "first_in_event, last_out_event, final) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(person_id, day) DO "
                "UPDATE SET first_in = excluded.first_in, last_out = excluded.last_out, "
                "present_s = excluded.present_s, "
                "status = excluded.status, updated_at = excluded.updated_at, first_in_event = excluded.first_in_event, "
                "last_out_event = excluded.last_out_event, final = excluded.final",
                [
                    (
                        r.person_id,
                        r.day.isoformat(),
                        stored_time_or_none(r.first_in),
                        stored_time_or_none(r.last_out),
                        r.present_s,
                        r.status,
                        stored_time(r.updated_at),
                        r.first_in_event,
                        r.last_out_event,
                        int(r.final),
                    )
                    for r in rows
                ],
            )

    def mark_attendance_due(self, pairs: Iterable[tuple[str, date]]) -> None:
        """Note (person_id, day) pairs whose attendance must be recomputed (kept until :meth:`clear_attendance_due`)."""
        with transaction(self.db) as tx:
            tx.executemany(
                "INSERT OR IGNORE INTO attendance_due (person_id, day) VALUES (?, ?)",
                [(person_id, day.isoformat()) for person_id, day in pairs],
            )

    def attendance_due(self, limit: int | None = None) -> list[tuple[str, date]]:
        """The (person_id, day) pairs waiting to be recomputed, the longest waiting first (at most ``limit``)."""
        rows = self.db.conn.execute(
            "SELECT person_id, day FROM attendance_due ORDER BY rowid LIMIT ?", (-1 if limit is None else limit,)
        )
        return [(p, date.fromisoformat(d)) for p, d in rows]

    def clear_attendance_due(self, pairs: Iterable[tuple[str, date]]) -> None:
        """Forget pairs that were recomputed."""
        with transaction(self.db) as tx:
            tx.executemany(
                "DELETE FROM attendance_due WHERE person_id = ? AND day = ?",
                [(person_id, day.isoformat()) for person_id, day in pairs],
            )

    def unsigned_days(self, before: date) -> list[tuple[str, date, datetime]]:
        """(person_id, day, updated_at) of every stored day before ``before`` not signed off yet, oldest first."""
        rows = self.db.conn.execute(
            "SELECT person_id, day, updated_at FROM attendance WHERE final = 0 AND day < ? ORDER BY day, person_id",
            (before.isoformat(),),
        )
        return [(p, date.fromisoformat(d), read_time(u)) for p, d, u in rows]

    def attendance(self, day: date) -> list[AttendanceRow]:
        """Everyone's attendance on one day, by person id."""
        rows = self.db.conn.execute(
            "SELECT person_id, day, first_in, last_out, present_s, status, updated_at, first_in_event, last_out_event, "
            "final FROM attendance WHERE day = ? ORDER BY person_id",
            (day.isoformat(),),
        )
        return [
            AttendanceRow(
                p,
                date.fromisoformat(d),
                read_time_or_none(fi),
                read_time_or_none(lo),
                float(s),
                st,
                read_time(u),
                fe,
                le,
                bool(f),
            )
            for p, d, fi, lo, s, st, u, fe, le, f in rows
        ]
