"""The audit log (who changed what through the API) and the dead letters (messages the hub could not use)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from hub.store.core import details_json, read_time, stored_time
from hub.store.crypto import KeyStore
from hub.store.schema import transaction

MAX_DEAD_LETTER_BYTES: Final = 256 * 1024
"""Payload bytes kept per dead letter (the full size is recorded in ``size``)."""


OTHER_REASONS: Final = "other reasons: more different reasons this hour than dead_letters.reasons_per_hour"
"""The reason of the row that counts a sender's dead letters past its reasons for the hour."""


@dataclass(frozen=True, slots=True)
class DeadLetterLimits:
    """How many dead letters are kept one by one (``[dead_letters]`` in the hub's config)."""

    samples_per_hour: int = 10
    """Rows per (sender, reason, hour); later letters of that kind add to the last row's ``count``."""
    reasons_per_hour: int = 20
    """Different reasons per (sender, hour); more go to one :data:`OTHER_REASONS` row."""
    max_rows: int = 10_000
    """Rows kept in all; the oldest go first."""


@dataclass(frozen=True, slots=True)
class DeadLetterNote:
    """A message (or ``count`` alike) to keep as a dead letter: where it came from, why, and its payload."""

    topic: str
    reason: str
    payload: bytes
    sender: str | None = None
    """Who the topic speaks for (``device/<id>``...); the topic itself when None."""
    count: int = 1
    size: int | None = None
    """The size of the message when ``payload`` is only its start."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the hub could not use, with its (decrypted, possibly truncated) payload.

    ``count`` is how many messages of the same sender and reason this row stands for (past the samples kept one by
    one per hour), ``last_at`` when the latest of them arrived.
    """

    id: int
    received_at: datetime
    topic: str
    reason: str
    size: int
    payload: bytes
    sender: str | None = None
    count: int = 1
    last_at: datetime | None = None


class JournalStore(KeyStore):
    """The audit log and the dead letters (payloads encrypted: they may hold a face).

    Dead letters are kept one by one up to :attr:`dead_letter_limits`, then only counted, so a flood of junk costs a
    bounded number of rows.
    """

    dead_letter_limits: DeadLetterLimits = DeadLetterLimits()

    def audit(
        self, actor: str, action: str, subject: str | None, details: Mapping[str, object] | None, now: datetime
    ) -> int:
        """Append a row to the audit log (who changed what through the API); returns its id."""
        with transaction(self.db) as tx:
            return self._audit(tx, actor, action, subject, details, now)

    def _audit(
        self,
        tx: sqlite3.Connection,
        actor: str,
        action: str,
        subject: str | None,
        details: Mapping[str, object] | None,
        now: datetime,
    ) -> int:
        cur = tx.execute(
            "INSERT INTO audit (at, actor, action, subject, details) VALUES (?, ?, ?, ?, ?)",
            (stored_time(now), actor, action, subject, details_json(details)),
        )
        return int(cur.lastrowid or 0)

    def audit_log(self, subject: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest audit rows first (of one subject when given), details decoded."""
        where, params = ("WHERE subject = ?", [subject]) if subject is not None else ("", [])
        rows = self.db.conn.execute(
            f"SELECT id, at, actor, action, subject, details FROM audit {where} ORDER BY id DESC LIMIT ?",
            [*params, limit],
        ).fetchall()
        return [
            {
                "id": i,
                "at": read_time(at),
                "actor": actor,
                "action": action,
                "subject": subj,
                "details": json.loads(det),
            }
            for i, at, actor, action, subj, det in rows
        ]

    def record_dead_letter(self, topic: str, reason: str, payload: bytes, now: datetime) -> int:
        """Keep a message the hub could not use, with the reason; the payload is encrypted (it may hold a face)."""
        with transaction(self.db) as tx:
            row = self._dead_letter(tx, topic, reason, payload, now)
            self._trim_dead_letters(tx)
            return row

    def record_dead_letters(self, notes: Sequence[DeadLetterNote], now: datetime) -> None:
        """Keep several dead letters in one transaction (a batch's, or the counts of dropped messages)."""
        if not notes:
            return
        with transaction(self.db) as tx:
            for note in notes:
                self._dead_letter(
                    tx, note.topic, note.reason, note.payload, now, sender=note.sender, count=note.count, size=note.size
                )
            self._trim_dead_letters(tx)

    def _dead_letter(
        self,
        tx: sqlite3.Connection,
        topic: str,
        reason: str,
        payload: bytes,
        now: datetime,
        *,
        sender: str | None = None,
        count: int = 1,
        size: int | None = None,
    ) -> int:
        """Insert a row, or past the limits of the hour add ``count`` to the row that stands for this kind."""
        limits = self.dead_letter_limits
        utc = now.astimezone(UTC)
        hour = stored_time(utc.replace(minute=0, second=0, microsecond=0))
        sender = (sender or topic)[:1024]
        reason = reason[:2000]
        kept, last_id = tx.execute(
            "SELECT count(*), max(id) FROM dead_letters WHERE hour = ? AND sender = ? AND reason = ?",
            (hour, sender, reason),
        ).fetchone()
        if kept == 0 and reason != OTHER_REASONS:
            reasons = tx.execute(
                "SELECT count(DISTINCT reason) FROM dead_letters WHERE hour = ? AND sender = ? AND reason != ?",
                (hour, sender, OTHER_REASONS),
            ).fetchone()[0]
            if reasons >= limits.reasons_per_hour:
                return self._dead_letter(tx, topic, OTHER_REASONS, payload, now, sender=sender, count=count, size=size)
        if kept >= limits.samples_per_hour:
            tx.execute(
                "UPDATE dead_letters SET count = count + ?, last_at = ? WHERE id = ?",
                (count, stored_time(now), last_id),
            )
            return int(last_id)
        token = self._crypto().encrypt(payload[:MAX_DEAD_LETTER_BYTES])
        cur = tx.execute(
            "INSERT INTO dead_letters (received_at, topic, reason, size, payload, sender, hour, count, last_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                stored_time(now),
                topic[:1024],
                reason,
                len(payload) if size is None else size,
                token,
                sender,
                hour,
                count,
                stored_time(now),
            ),
        )
        return int(cur.lastrowid or 0)

    def _trim_dead_letters(self, tx: sqlite3.Connection) -> None:
        """Delete the oldest rows past ``max_rows``."""
        row = tx.execute(
            "SELECT id FROM dead_letters ORDER BY id DESC LIMIT 1 OFFSET ?", (self.dead_letter_limits.max_rows,)
        ).fetchone()
        if row is not None:
            tx.execute("DELETE FROM dead_letters WHERE id <= ?", (row[0],))

    def dead_letter_rows(self) -> int:
        """How many dead-letter rows are kept (each stands for ``count`` messages)."""
        return int(self.db.conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    def dead_letter_count(self, sender: str | None = None) -> int:
        """How many dead letters the kept rows stand for (of one sender when given)."""
        where, params = ("WHERE sender = ?", (sender,)) if sender is not None else ("", ())
        query = f"SELECT coalesce(sum(count), 0) FROM dead_letters {where}"
        return int(self.db.conn.execute(query, params).fetchone()[0])

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters first, payloads decrypted."""
        rows = self.db.conn.execute(
            "SELECT id, received_at, topic, reason, size, payload, sender, count, last_at FROM dead_letters "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            DeadLetter(
                i,
                read_time(at),
                topic,
                reason,
                size,
                self._decrypt(token, f"dead letter {i}"),
                sender,
                count,
                read_time(last) if last is not None else None,
            )
            for i, at, topic, reason, size, token, sender, count, last in rows
        ]
