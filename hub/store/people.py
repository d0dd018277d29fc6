"""People and their encrypted face templates, and erasure (the right to be forgotten)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from ulid import ULID

from edge.protocol import wire
from hub.store.core import read_time, read_time_or_none, stored_time
from hub.store.erasure import ErasureLedger
from hub.store.errors import NotFound, StoreError
from hub.store.journal import JournalStore
from hub.store.schema import transaction

MAX_NAME_CHARS: Final = 256
"""A person's name travels in presence and galleries (wire ShortText)."""


@dataclass(frozen=True, slots=True)
class Person:
    """A person the hub knows; an erased person is a tombstone with ``name`` None and ``erased_at`` set."""

    id: str
    name: str | None
    created_at: datetime
    updated_at: datetime
    erased_at: datetime | None


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What :meth:`HubStore.erase_person` removed."""

    person_id: str
    templates: int
    snapshots: int
    captures: int
    events: int
    """Events whose person id, score and margin were removed."""
    dead_letters: int
    audit_redacted: int
    wal_truncated: bool
    """False when another connection kept the WAL from being checkpointed and truncated completely."""
    backups: int = 0
    """Backups the hub made (``backups.list``) the person was erased from too."""
    backups_failed: tuple[str, ...] = ()
    """Backups that could not be changed: each path and why (the ledger still erases them again on a restore)."""


class PeopleStore(JournalStore):
    """People (an erased one stays as a tombstone), their face templates, and erasure."""

    @staticmethod
    def _check_name(name: str) -> str:
        name = name.strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise ValueError(f"a person's name must be 1-{MAX_NAME_CHARS} characters, got {name!r:.80}")
        return name

    def add_person(self, name: str, now: datetime, person_id: str | None = None) -> str:
        """Add a person; returns the id (``p-<ulid in lower case>`` unless given). Ids are never reused."""
        name = self._check_name(name)
        pid = person_id if person_id is not None else f"p-{str(ULID.from_datetime(now)).lower()}"
        wire.check_id(pid, "person id")
        stamp = stored_time(now)
        with transaction(self.db) as tx:
            if tx.execute("SELECT 1 FROM people WHERE id = ?", (pid,)).fetchone() is not None:
                raise StoreError(f"person id {pid!r} is taken (ids of erased people are never reused)")
            tx.execute(
                "INSERT INTO people (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)", (pid, name, stamp, stamp)
            )
        return pid

    def rename_person(self, person_id: str, name: str, now: datetime) -> None:
        """Change a person's name; raises :class:`NotFound` for an unknown or erased person."""
        name = self._check_name(name)
        with transaction(self.db) as tx:
            cur = tx.execute(
                "UPDATE people SET name = ?, updated_at = ? WHERE id = ? AND erased_at IS NULL",
                (name, stored_time(now), person_id),
            )
            if cur.rowcount != 1:
                raise NotFound(f"no person {person_id!r}")

    @staticmethod
    def _person(row: Sequence[Any]) -> Person:
        return Person(row[0], row[1], read_time(row[2]), read_time(row[3]), read_time_or_none(row[4]))

    def get_person(self, person_id: str) -> Person | None:
        """A person (an erased one as a tombstone); None when the id was never used."""
        row = self.db.conn.execute(
            "SELECT id, name, created_at, updated_at, erased_at FROM people WHERE id = ?", (person_id,)
        ).fetchone()
        return None if row is None else self._person(row)

    def person_ids(self) -> list[str]:
        """The id of everybody the store has a row for, erased tombstones too."""
        return [pid for (pid,) in self.db.conn.execute("SELECT id FROM people")]

    def people_names(self) -> list[tuple[str, str]]:
        """(id, name) of every person not erased, by id: what the presence board lists (no times parsed)."""
        rows = self.db.conn.execute("SELECT id, name FROM people WHERE erased_at IS NULL ORDER BY id").fetchall()
        return [(pid, name) for pid, name in rows]

    def people_signature(self) -> tuple[object, ...]:
        """A cheap summary of the people table that changes when a person is added, renamed or erased.

        One aggregate read (about a millisecond for 10,000 people) instead of reading every name; a rename to a name
        of the same length stamped with the same ``updated_at`` goes unnoticed, so whoever renames also says so.
        """
        return tuple(
            self.db.conn.execute(
                "SELECT count(*), max(updated_at), max(erased_at), total(length(name)) FROM people"
            ).fetchone()
        )

    def list_people(self, *, include_erased: bool = False) -> list[Person]:
        """People by name (then id); erased tombstones only when asked."""
        where = "" if include_erased else "WHERE erased_at IS NULL"
        rows = self.db.conn.execute(
            f"SELECT id, name, created_at, updated_at, erased_at FROM people {where} ORDER BY name, id"
        ).fetchall()
        return [self._person(row) for row in rows]

    def add_template(
        self,
        person_id: str,
        model_id: str,
        embedding: npt.NDArray[np.floating[Any]],
        quality: float | None,
        source: str,
        now: datetime,
    ) -> int:
        """Store one face template (encrypted, as little-endian float32); returns its id."""
        vector = np.asarray(embedding, dtype="<f4")
        if vector.ndim != 1 or not 16 <= vector.size <= 4096:
            raise ValueError(f"an embedding must be a vector of 16-4096 values, got shape {vector.shape}")
        if not np.isfinite(vector).all() or not np.any(vector):
            raise ValueError("an embedding must be finite and not all zero")
        if not model_id or len(model_id) > 256:
            raise ValueError("model_id must be 1-256 characters")
        kind, _, rest = source.partition(":")
        if kind not in ("photo", "capture") or not rest or len(source) > 512:
            raise ValueError(f"source must be 'photo:<name>' or 'capture:<capture_id>', got {source!r:.80}")
        if quality is not None and not 0.0 <= quality <= 1.0:
            raise ValueError(f"quality must be in 0..1, got {quality}")
        token = self._crypto().encrypt(vector.tobytes())
        with transaction(self.db) as tx:
            row = tx.execute("SELECT erased_at FROM people WHERE id = ?", (person_id,)).fetchone()
            if row is None or row[0] is not None:
                raise NotFound(f"no person {person_id!r}")
            cur = tx.execute(
                "INSERT INTO templates (person_id, model_id, dim, embedding, quality, source, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (person_id, model_id, int(vector.size), token, quality, source, stored_time(now)),
            )
            return int(cur.lastrowid or 0)

    def delete_template(self, template_id: int) -> None:
        """Delete one template; raises :class:`NotFound` when there is none with that id."""
        with transaction(self.db) as tx:
            if tx.execute("DELETE FROM templates WHERE id = ?", (template_id,)).rowcount != 1:
                raise NotFound(f"no template {template_id}")

    def template_counts(self, model_id: str) -> dict[str, int]:
        """Templates per person for one model."""
        rows = self.db.conn.execute(
            "SELECT person_id, count(*) FROM templates WHERE model_id = ? GROUP BY person_id", (model_id,)
        )
        return {pid: int(n) for pid, n in rows}

    def templates_for(self, model_id: str) -> tuple[list[str], npt.NDArray[np.float32]]:
        """Every template of one model, decrypted: (person id per row, float32 matrix rows x dim).

        Rows come in person-id order, each person's in the order they were added. No templates: shape ``(0, 0)``.
        """
        rows = self.db.conn.execute(
            "SELECT person_id, dim, embedding FROM templates WHERE model_id = ? ORDER BY person_id, id", (model_id,)
        ).fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        dims = {dim for _, dim, _ in rows}
        if len(dims) != 1:
            raise StoreError(f"templates of model {model_id!r} have different sizes {sorted(dims)}")
        matrix = np.empty((len(rows), dims.pop()), dtype=np.float32)
        for i, (person_id, _, token) in enumerate(rows):
            raw = self._decrypt(token, f"a template of {person_id}")
            if len(raw) != matrix.shape[1] * 4:
                raise StoreError(
                    f"a template of {person_id} decrypts to {len(raw)} bytes, not {matrix.shape[1]} floats"
                )
            matrix[i] = np.frombuffer(raw, dtype="<f4")
        return [pid for pid, _, _ in rows], matrix

    def erase_person(self, person_id: str, now: datetime, *, actor: str = "hub") -> ErasureReport:
        """Erase a person: templates, pictures, captures, identity in events, presence, attendance, name.

        Leaves a tombstone (id, created_at, erased_at) so the id is never reused, records the id in the erasure ledger
        (:mod:`hub.store.erasure`: a restore re-applies it), writes an audit row without the name, then checkpoints
        the WAL, VACUUMs and truncates the WAL so no trace remains in the files. Running it again for an erased person
        repeats the clean-up (after an interruption, say). Devices forget the person when
        the hub publishes their next gallery.
        """
        if self.get_person(person_id) is None:
            raise NotFound(f"no person {person_id!r}")
        # The ledger first, durably: should the hub stop after the commit, a restored backup still loses them.
        ErasureLedger(self.data_dir).record(person_id, now)
        with transaction(self.db) as tx:
            row = tx.execute("SELECT name FROM people WHERE id = ?", (person_id,)).fetchone()
            if row is None:
                raise NotFound(f"no person {person_id!r}")
            name: str | None = row[0]
            files = [
                rel
                for (rel,) in tx.execute(
                    "SELECT s.file FROM snapshots s JOIN events e ON e.event_id = s.event_id WHERE e.person_id = ? "
                    "UNION ALL SELECT file FROM captures WHERE person_id = ?",
                    (person_id, person_id),
                )
            ]
            snapshots = tx.execute(
                "DELETE FROM snapshots WHERE event_id IN (SELECT event_id FROM events WHERE person_id = ?)",
                (person_id,),
            ).rowcount
            events = tx.execute(
                "UPDATE events SET person_id = NULL, score = NULL, margin = NULL, snapshot_file = NULL, redacted = 1 "
                "WHERE person_id = ?",
                (person_id,),
            ).rowcount
            captures = tx.execute("DELETE FROM captures WHERE person_id = ?", (person_id,)).rowcount
            templates = tx.execute("DELETE FROM templates WHERE person_id = ?", (person_id,)).rowcount
            tx.execute("DELETE FROM presence WHERE person_id = ?", (person_id,))
            tx.execute("DELETE FROM attendance WHERE person_id = ?", (person_id,))
            tx.execute("DELETE FROM attendance_due WHERE person_id = ?", (person_id,))
            audit_redacted = self._redact_audit(tx, person_id, name)
            dead_letters = self._erase_dead_letters(tx, person_id, name)
            alerts = self._erase_from_alert_book(tx, person_id, name)
            tx.execute(
                "UPDATE people SET name = NULL, updated_at = ?, erased_at = coalesce(erased_at, ?) WHERE id = ?",
                (stored_time(now), stored_time(now), person_id),
            )
            details = {
                "templates": templates,
                "snapshots": snapshots,
                "captures": captures,
                "events": events,
                "dead_letters": dead_letters,
                "audit_redacted": audit_redacted,
                "alerts": alerts,
            }
            self._audit(tx, actor, "person.erase", person_id, details, now)
            # Files go before the commit: should the commit fail, erasing again finishes the job, and no picture of
            # the person outlives a committed erasure.
            self._unlink(files)
        truncated = self._compact()
        return ErasureReport(person_id, templates, snapshots, captures, events, dead_letters, audit_redacted, truncated)

    @staticmethod
    def _redact_audit(tx: sqlite3.Connection, person_id: str, name: str | None) -> int:
        """Blank the details of earlier audit rows about the person or naming them (as a whole JSON string)."""
        redacted = '{"redacted":true}'
        count = tx.execute(
            "UPDATE audit SET details = ? WHERE subject = ? AND details != ? AND action != 'person.erase'",
            (redacted, person_id, redacted),
        ).rowcount
        for needle in {json.dumps(person_id), *([json.dumps(name, ensure_ascii=False)] if name else [])}:
            count += tx.execute("UPDATE audit SET details = ? WHERE instr(details, ?) > 0", (redacted, needle)).rowcount
        return count

    @staticmethod
    def _erase_from_alert_book(tx: sqlite3.Connection, person_id: str, name: str | None) -> int:
        """Drop the saved alert book's alerts about or naming the person (the running hub's book did it first)."""
        from hub.alerts.book import AlertBook  # the store only needs the book's format here

        row = tx.execute("SELECT value FROM meta WHERE key = 'alert_book'").fetchone()
        if row is None:
            return 0
        book = AlertBook.from_dict(json.loads(row[0]))
        gone = book.forget_person(person_id, name)
        if gone:
            tx.execute("UPDATE meta SET value = ? WHERE key = 'alert_book'", (json.dumps(book.to_dict()),))
        return len(gone)

    def _erase_dead_letters(self, tx: sqlite3.Connection, person_id: str, name: str | None) -> int:
        """Delete dead letters whose payload names the person (by id, or by name as a JSON string)."""
        needles = [person_id.encode()] + ([json.dumps(name, ensure_ascii=False).encode()] if name else [])
        doomed = []
        for letter_id, token in tx.execute("SELECT id, payload FROM dead_letters").fetchall():
            payload = self._decrypt(token, f"dead letter {letter_id}")
            if any(needle in payload for needle in needles):
                doomed.append((letter_id,))
        tx.executemany("DELETE FROM dead_letters WHERE id = ?", doomed)
        return len(doomed)
