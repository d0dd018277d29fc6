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
        its device already used its ``seq`` for another event in the same outbox epoch) is kept as a dead letter with
        the reason. An event naming an erased person is stored without the person, score and margin. A (device,
        epoch) the hub has not seen before is recorded (:meth:`device_epochs`); events without an epoch (devices
        made before epochs) count in the device's epoch ``''``.
        """
        inserted: list[str] = []
        rows = list(rows)
        first_seen: dict[tuple[str, str], str] = {}  # (device, epoch) -> when first seen, recorded once per batch
        with transaction(self.db) as tx:
            erased = self._erased_among(tx, {r.event.person_id for r in rows if r.event.person_id is not None})
            for row in rows:
                event = row.event
                epoch = event.epoch or ""
                person: str | None = event.person_id
                score: float | None = event.score
                margin: float | None = event.margin
                redacted = 0
                if person is not None and person in erased:
                    person, score, margin, redacted = None, None, None, 1
                try:
                    cur = tx.execute(
                        "INSERT INTO events (event_id, device, epoch, seq, at, received_at, type, person_id, score, "
                        "margin, track, quality, has_snapshot, clock_skew_s, gallery_version, redacted) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING",
                        (
                            event.event_id,
                            event.device,
                            epoch,
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
                        "SELECT event_id FROM events WHERE device = ? AND epoch = ? AND seq = ?",
                        (event.device, epoch, event.seq),
                    ).fetchone()
                    if other is None:
                        raise
                    series = f"of epoch {epoch} " if epoch else "(no epoch: a device made before epochs) "
                    reason = (
                        f"device {event.device} sent seq {event.seq} {series}again for event {event.event_id}, but "
                        f"event {other[0]} already has it (was the device's outbox recreated by an older build?)"
                    )
                    self._dead_letter(tx, f"event:{event.device}", reason, wire.encode(event), row.received_at)
                    continue
                if cur.rowcount == 1:
                    inserted.append(event.event_id)
                    first_seen.setdefault((event.device, epoch), stored_time(row.received_at))
            tx.executemany(
                "INSERT INTO device_epochs (device, epoch, first_seen) VALUES (?, ?, ?) "
                "ON CONFLICT(device, epoch) DO NOTHING",
                [(device, epoch, seen) for (device, epoch), seen in first_seen.items()],
            )
        return inserted

    def device_epochs(self, device_id: str) -> list[tuple[str, int | None]]:
        """(epoch, delivered_seq) of every outbox epoch the device has sent events in, oldest first."""
        rows = self.db.conn.execute(
            "SELECT epoch, delivered_seq FROM device_epochs WHERE device = ? ORDER BY first_seen, rowid", (device_id,)
        )
        return [(str(epoch), seq) for epoch, seq in rows]

    @staticmethod
    def _erased_among(tx: sqlite3.Connection, person_ids: set[str]) -> set[str]:
        """The erased people among ``person_ids`` (one statement per chunk, not one per event)."""
        erased: set[str] = set()
        for chunk in id_chunks(sorted(person_ids)):
            rows = tx.execute(
                f"SELECT id FROM people WHERE erased_at IS NOT NULL AND id IN ({', '.join('?' * len(chunk))})", chunk
            )
            erased.update(person_id for (person_id,) in rows)
        return erased

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        """One stored event as a column -> value mapping (times as text); None when unknown."""
        cur = self.db.conn.execute("SELECT * FROM events WHERE event_id = ?", (event_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))

    def advance_delivered(self, device_id: str, max_ahead_s: float | None = None) -> datetime | None:
        """Move each epoch's ``delivered_seq``/``delivered_through`` over the seqs now stored without a gap.

        Sequence numbers count per outbox epoch, so each epoch is walked on its own: from after its
        ``delivered_seq``, or from its lowest stored seq when none was recorded yet. The device's own
        ``delivered_seq`` is that of its newest epoch and its ``delivered_through`` the furthest any epoch reached
        (an old epoch's undelivered rest stays in the outbox file that was moved aside and cannot hold days open
        for ever). An event that arrived more than ``max_ahead_s`` ahead of the hub's clock moves ``delivered_seq``
        but not ``delivered_through`` (a device clock gone wrong would otherwise make every day final at once).
        Returns the device's ``delivered_through`` (None while nothing is known).
        """
        with transaction(self.db) as tx:
            epochs = tx.execute(
                "SELECT epoch, delivered_seq, delivered_through FROM device_epochs WHERE device = ? "
                "ORDER BY first_seen, rowid",
                (device_id,),
            ).fetchall()
            device_seq: int | None = None
            device_through: str | None = None
            for epoch, seq, through in epochs:
                device_seq, through = self._walk_epoch(tx, device_id, epoch, seq, through, max_ahead_s)
                if through is not None and (device_through is None or through > device_through):
                    device_through = through
            row = tx.execute(
                "SELECT delivered_seq, delivered_through FROM devices WHERE id = ?", (device_id,)
            ).fetchone()
            if device_through is not None and (row is None or (row[0], row[1]) != (device_seq, device_through)):
                tx.execute(
                    "INSERT INTO devices (id, delivered_seq, delivered_through) VALUES (?, ?, ?) ON CONFLICT(id) "
                    "DO UPDATE SET delivered_seq = excluded.delivered_seq, "
                    "delivered_through = excluded.delivered_through",
                    (device_id, device_seq, device_through),
                )
            return read_time_or_none(device_through)

    @staticmethod
    def _walk_epoch(
        tx: sqlite3.Connection,
        device_id: str,
        epoch: str,
        delivered: int | None,
        through: str | None,
        max_ahead_s: float | None,
    ) -> tuple[int | None, str | None]:
        """Advance one epoch over its contiguous stored seqs (inside the caller's transaction); its new state."""
        seq = delivered
        if seq is None:
            low = tx.execute(
                "SELECT min(seq) FROM events WHERE device = ? AND epoch = ?", (device_id, epoch)
            ).fetchone()[0]
            if low is None:
                return delivered, through
            seq = int(low) - 1
        start = seq
        cursor = tx.execute(
            "SELECT seq, at, clock_skew_s FROM events WHERE device = ? AND epoch = ? AND seq > ? ORDER BY seq",
            (device_id, epoch, seq),
        )
        for next_seq, at, skew in cursor:
            if next_seq != seq + 1:
                break
            seq = next_seq
            if max_ahead_s is not None and skew is not None and -skew > max_ahead_s:
                continue
            through = at if through is None or at > through else through  # a clock stepping back never lowers it
        cursor.close()
        if seq == start:
            return delivered, through
        tx.execute(
            "UPDATE device_epochs SET delivered_seq = ?, delivered_through = ? WHERE device = ? AND epoch = ?",
            (seq, through, device_id, epoch),
        )
        return seq, through

    def sightings(
        self, person_id: str, start: datetime, end: datetime, max_ahead_s: float | None = None
    ) -> list[tuple[str, str, str, datetime, bool, float | None]]:
        """(event_id, device, type, at, has_snapshot, quality) of a person's events with start <= at < end, by time.

        With ``max_ahead_s``, events that arrived more than that ahead of the hub's clock are left out.
        """
        ahead = "" if max_ahead_s is None else " AND (clock_skew_s IS NULL OR clock_skew_s >= ?)"
        rows = self.db.conn.execute(
            "SELECT event_id, device, type, at, has_snapshot, quality FROM events "
            "WHERE person_id = ? AND at >= ? AND at < ?"
            f"{ahead} ORDER BY at",
            (person_id, stored_time(start), stored_time(end), *(() if max_ahead_s is None else (-max_ahead_s,))),
        )
        return [(e, d, t, read_time(a), bool(h), None if q is None else float(q)) for e, d, t, a, h, q in rows]

    def sightings_of(
        self, person_ids: Iterable[str], start: datetime, end: datetime, max_ahead_s: float | None = None
    ) -> dict[str, list[tuple[str, str, str, datetime, bool, float | None]]]:
        """:meth:`sightings` of many people at once (a statement per :data:`ID_CHUNK` of them), by person id.

        Everybody asked for is in the result, those without sightings with an empty list.
        """
        ids = list(dict.fromkeys(person_ids))
        found: dict[str, list[tuple[str, str, str, datetime, bool, float | None]]] = {p: [] for p in ids}
        ahead = "" if max_ahead_s is None else " AND (clock_skew_s IS NULL OR clock_skew_s >= ?)"
        for chunk in id_chunks(ids):
            rows = self.db.conn.execute(
                "SELECT person_id, event_id, device, type, at, has_snapshot, quality FROM events "
                f"WHERE person_id IN ({', '.join('?' * len(chunk))}) AND at >= ? AND at < ?{ahead} ORDER BY at",
                (
                    *chunk,
                    stored_time(start),
                    stored_time(end),
                    *(() if max_ahead_s is None else (-max_ahead_s,)),
                ),
            )
            for p, e, d, t, a, h, q in rows:
                found[p].append((e, d, t, read_time(a), bool(h), None if q is None else float(q)))
        return found

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
