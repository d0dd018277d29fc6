"""The audit log (who changed what through the API) and the dead letters (messages the hub could not use)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from hub.store.core import details_json, read_time, stored_time
from hub.store.crypto import KeyStore
from hub.store.schema import transaction

MAX_DEAD_LETTER_BYTES: Final = 256 * 1024
"""Payload bytes kept per dead letter (the full size is recorded in ``size``)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the hub could not use, with its (decrypted, possibly truncated) payload."""

    id: int
    received_at: datetime
    topic: str
    reason: str
    size: int
    payload: bytes


class JournalStore(KeyStore):
    """The audit log and the dead letters (payloads encrypted: they may hold a face)."""

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
            return self._dead_letter(tx, topic, reason, payload, now)

    def _dead_letter(self, tx: sqlite3.Connection, topic: str, reason: str, payload: bytes, now: datetime) -> int:
        token = self._crypto().encrypt(payload[:MAX_DEAD_LETTER_BYTES])
        cur = tx.execute(
            "INSERT INTO dead_letters (received_at, topic, reason, size, payload) VALUES (?, ?, ?, ?, ?)",
            (stored_time(now), topic[:1024], reason[:2000], len(payload), token),
        )
        return int(cur.lastrowid or 0)

    def dead_letter_count(self) -> int:
        """How many dead letters are kept."""
        return int(self.db.conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters first, payloads decrypted."""
        rows = self.db.conn.execute(
            "SELECT id, received_at, topic, reason, size, payload FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [
            DeadLetter(i, read_time(at), topic, reason, size, self._decrypt(token, f"dead letter {i}"))
            for i, at, topic, reason, size, token in rows
        ]
