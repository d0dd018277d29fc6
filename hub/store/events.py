"""Door events: stored once each, what every device has delivered without a gap, sightings, and retention."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.protocol import wire
from hub.store.core import id_chunks, read_time, read_time_or_none, stored_time
from hub.store.journal import JournalStore
from hub.store.schema import transaction


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """An event as the hub received it: the validated payload, when it arrived, the device's clock skew if known."""

    event: wire.Event
    received_at: datetime
    clock_skew_s: float | None = None


class EventStore(JournalStore):
    """Door events as the devices reported them, and the retention that deletes old events and pictures."""

    def insert_events(self, rows: Iterable[ReceivedEvent]) -> list[str]:
        """Store a batch of events in one transaction; return the ids stored now (duplicates are ignored).

        Every event of the batch is safe to ack once this returns: it is stored now, was stored before, or (when
        its device already used its ``seq`` for another event) is kept as a dead letter with the reason. An event
        naming an erased person is stored without the person, score and margin.
        """
        inserted: list[str] = []
        with transaction(self.db) as tx:
            for row in rows:
                event = row.event
                person: str | None = event.person_id
                score: float | None = event.score
                margin: float | None = event.margin
                redacted = 0
                if person is not None and self._is_erased(tx, person):
                    person, score, margin, redacted = None, None, None, 1
                try:
                    cur = tx.execute(
                        "INSERT INTO events (event_id, device, seq, at, received_at, type, person_id, score, margin, "
                        "track, quality, has_snapshot, clock_skew_s, gallery_version, redacted) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING",
                        (
                            event.event_id,
                            event.device,
                            event.seq,
                            stored_time(event.at),
                            stored_time(row.received_at),
                            event.type,
                            person,
                            score,
                            margin,
                            event.track,
                            event.quality,
                            int(event.has_snapshot),
                            row.clock_skew_s,
                            event.gallery_version,
                            redacted,
                        ),
                    )
                except sqlite3.IntegrityError:
                    other = tx.execute(
                        "SELECT event_id FROM events WHERE device = ? AND seq = ?", (event.device, event.seq)
                    ).fetchone()
                    if other is None:
                        raise
                    reason = (
                        f"device {event.device} sent seq {event.seq} again for event {event.event_id}, but event "
                        f"{other[0]} already has it (was the device's outbox recreated?)"
                    )
                    self._dead_letter(tx, f"event:{event.device}", reason, wire.encode(event), row.received_at)
                    continue
                if cur.rowcount == 1:
                    inserted.append(event.event_id)
        return inserted

    @staticmethod
    def _is_erased(tx: sqlite3.Connection, person_id: str) -> bool:
        row = tx.execute("SELECT erased_at FROM people WHERE id = ?", (person_id,)).fetchone()
        return row is not None and row[0] is not None

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        """One stored event as a column -> value mapping (times as text); None when unknown."""
        cur = self.db.conn.execute("SELECT * FROM events WHERE event_id = ?", (event_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))

    def advance_delivered(self, device_id: str) -> datetime | None:
        """Move the device's ``delivered_seq``/``delivered_through`` over the seqs now stored without a gap.

        The walk starts after ``delivered_seq``, or at the device's lowest stored seq when none was recorded yet.
        Returns ``delivered_through`` (None while nothing is known).
        """
        with transaction(self.db) as tx:
            row = tx.execute(
                "SELECT delivered_seq, delivered_through FROM devices WHERE id = ?", (device_id,)
            ).fetchone()
            seq, through = (row[0], row[1]) if row is not None else (None, None)
            if seq is None:
                low = tx.execute("SELECT min(seq) FROM events WHERE device = ?", (device_id,)).fetchone()[0]
                if low is None:
                    return read_time_or_none(through)
                seq = int(low) - 1
            start = seq
            cursor = tx.execute(
                "SELECT seq, at FROM events WHERE device = ? AND seq > ? ORDER BY seq", (device_id, seq)
            )
            for next_seq, at in cursor:
                if next_seq != seq + 1:
                    break
                seq = next_seq
                through = at if through is None or at > through else through  # a clock stepping back never lowers it
            cursor.close()
            if seq != start:
                tx.execute(
                    "INSERT INTO devices (id, delivered_seq, delivered_through) VALUES (?, ?, ?) ON CONFLICT(id) "
                    "DO UPDATE SET delivered_seq = excluded.delivered_seq, "
                    "delivered_through = excluded.delivered_through",
                    (device_id, seq, through),
                )
            return read_time_or_none(through)

    def sightings(self, person_id: str, start: datetime, end: datetime) -> list[tuple[str, str, str, datetime, bool]]:
        """(event_id, device, type, at, has_snapshot) of a person's events with start <= at < end, in time order."""
        rows = self.db.conn.execute(
            "SELECT event_id, device, type, at, has_snapshot FROM events WHERE person_id = ? AND at >= ? AND at < ? "
            "ORDER BY at",
            (person_id, stored_time(start), stored_time(end)),
        )
        return [(e, d, t, read_time(a), bool(h)) for e, d, t, a, h in rows]

    def recent_events(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest events first, as column -> value mappings."""
        cur = self.db.conn.execute("SELECT * FROM events ORDER BY at DESC, seq DESC LIMIT ?", (limit,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def purge(
        self, before: datetime, snapshots_before: datetime, dead_letters_before: datetime | None = None
    ) -> tuple[int, int]:
        """Retention: delete events older than ``before`` and snapshots older than ``snapshots_before``.

        Returns (events deleted, snapshot pictures deleted). A snapshot goes with its event at the latest; snapshot
        captures (whole-view pictures) count as snapshot pictures; enrolment captures stay until their person is
        erased (new models need them to make templates again). Dead letters older than ``dead_letters_before``
        (default ``before``) go too.
        """
        events_cut = stored_time(before)
        pictures_cut = max(events_cut, stored_time(snapshots_before))
        with transaction(self.db) as tx:
            doomed = tx.execute(
                "SELECT s.event_id, s.file FROM snapshots s JOIN events e ON e.event_id = s.event_id WHERE e.at < ?",
                (pictures_cut,),
            ).fetchall()
            captures = tx.execute(
                "SELECT capture_id, file FROM captures WHERE purpose = 'snapshot' AND at < ?",
                (stored_time(snapshots_before),),
            ).fetchall()
            for ids in id_chunks([event_id for event_id, _ in doomed]):
                marks = ", ".join("?" * len(ids))
                tx.execute(f"DELETE FROM snapshots WHERE event_id IN ({marks})", ids)
                tx.execute(f"UPDATE events SET snapshot_file = NULL WHERE event_id IN ({marks})", ids)
            tx.executemany("DELETE FROM captures WHERE capture_id = ?", [(cid,) for cid, _ in captures])
            events = tx.execute("DELETE FROM events WHERE at < ?", (events_cut,)).rowcount
            letters_cut = events_cut if dead_letters_before is None else stored_time(dead_letters_before)
            tx.execute("DELETE FROM dead_letters WHERE received_at < ?", (letters_cut,))
            self._unlink([rel for _, rel in doomed] + [rel for _, rel in captures])
        return events, len(doomed) + len(captures)
