"""Pictures: event snapshots and device captures, encrypted in files under the hub's data folder."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from edge.protocol import wire
from edge.protocol.files import write_atomic
from hub.store.core import read_time, stored_time
from hub.store.crypto import KeyStore
from hub.store.schema import transaction

SnapshotOutcome = Literal["stored", "duplicate", "discarded", "unknown_event"]
"""What :meth:`HubStore.save_snapshot` did; every outcome but ``unknown_event`` may be acked."""

CaptureOutcome = Literal["stored", "duplicate", "discarded"]
"""What :meth:`HubStore.save_capture` did; every outcome may be acked."""


class PictureStore(KeyStore):
    """Snapshots (``snapshots/<yyyy>/<mm>/<event_id>.jpg.enc``) and captures (``captures/...``), mode 0600."""

    def _picture_path(self, folder: str, at: str, ident: str) -> str:
        when = read_time(at)
        return f"{folder}/{when.year:04d}/{when.month:02d}/{ident}.jpg.enc"

    def save_snapshot(self, event_id: str, jpeg: bytes, now: datetime) -> SnapshotOutcome:
        """Store an event's snapshot encrypted in ``snapshots/<yyyy>/<mm>/<event_id>.jpg.enc`` (mode 0600).

        ``unknown_event`` (not stored; do not ack, the device sends it again) when the event has not arrived yet;
        ``discarded`` when the event's person was erased.
        """
        row = self.db.conn.execute("SELECT at, redacted FROM events WHERE event_id = ?", (event_id,)).fetchone()
        if row is None:
            return "unknown_event"
        if row[1]:
            return "discarded"
        if self.db.conn.execute("SELECT 1 FROM snapshots WHERE event_id = ?", (event_id,)).fetchone() is not None:
            return "duplicate"
        rel = self._picture_path("snapshots", row[0], event_id)
        write_atomic(self.data_dir / rel, self._crypto().encrypt(jpeg))
        with transaction(self.db) as tx:
            tx.execute(
                "INSERT INTO snapshots (event_id, file, bytes, created_at) VALUES (?, ?, ?, ?)",
                (event_id, rel, len(jpeg), stored_time(now)),
            )
            tx.execute("UPDATE events SET snapshot_file = ?, has_snapshot = 1 WHERE event_id = ?", (rel, event_id))
        return "stored"

    def _load_picture(self, rel: str | None, what: str) -> bytes | None:
        if rel is None:
            return None
        try:
            token = (self.data_dir / rel).read_bytes()
        except FileNotFoundError:
            return None
        return self._decrypt(token, what)

    def load_snapshot(self, event_id: str) -> bytes | None:
        """The decrypted JPEG of an event's snapshot; None when there is none (never sent, purged, erased)."""
        row = self.db.conn.execute("SELECT file FROM snapshots WHERE event_id = ?", (event_id,)).fetchone()
        return self._load_picture(None if row is None else row[0], f"snapshot of {event_id}")

    def save_capture(self, capture: wire.Capture, now: datetime) -> CaptureOutcome:
        """Store a picture a device took on command, encrypted in ``captures/<yyyy>/<mm>/<capture_id>.jpg.enc``.

        ``discarded`` when it names a person the hub does not know or has erased.
        """
        conn = self.db.conn
        if conn.execute("SELECT 1 FROM captures WHERE capture_id = ?", (capture.capture_id,)).fetchone() is not None:
            return "duplicate"
        if capture.person_id is not None:
            row = conn.execute("SELECT erased_at FROM people WHERE id = ?", (capture.person_id,)).fetchone()
            if row is None or row[0] is not None:
                return "discarded"
        at = stored_time(capture.at)
        rel = self._picture_path("captures", at, capture.capture_id)
        write_atomic(self.data_dir / rel, self._crypto().encrypt(capture.data))
        with transaction(self.db) as tx:
            tx.execute(
                "INSERT INTO captures (capture_id, device, command_id, purpose, person_id, idx, total, final, quality, "
                "file, bytes, at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    capture.capture_id,
                    capture.device,
                    capture.command_id,
                    capture.purpose,
                    capture.person_id,
                    capture.index,
                    capture.total,
                    int(capture.final),
                    capture.quality,
                    rel,
                    len(capture.data),
                    at,
                    stored_time(now),
                ),
            )
        return "stored"

    def load_capture(self, capture_id: str) -> bytes | None:
        """The decrypted JPEG of a capture; None when there is none."""
        row = self.db.conn.execute("SELECT file FROM captures WHERE capture_id = ?", (capture_id,)).fetchone()
        return self._load_picture(None if row is None else row[0], f"capture {capture_id}")
