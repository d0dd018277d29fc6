"""What every part of the hub's store shares: the stored time format, the meta table, file clean-up, compaction."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import sqlite_utils
from cryptography.fernet import MultiFernet

from hub.store.schema import transaction, user_version, write_batch

# How the store keeps data safe, for the reader of the hub:
#
# * One process (the hub) owns the database and writes through one HubStore from one thread; every write method is
#   one ``BEGIN IMMEDIATE`` transaction, so a method either happened completely or not at all.
# * Durability: WAL mode with ``synchronous=FULL``. The hub acks an event to its device only after the commit, and
#   the device then deletes the event from its outbox for good. With ``synchronous=NORMAL`` a WAL commit survives a
#   crash of the process but not a power cut or kernel panic (the WAL is fsynced only at checkpoints), so an acked
#   event could vanish with no copy left anywhere. FULL fsyncs the WAL on every commit; the hub batches events into
#   one transaction, so that is one fsync per batch, which a hub's disk does thousands of times a second.
# * Biometric data is encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256): face templates and dead-letter
#   payloads inside the database, snapshot and capture pictures in files (mode 0600) under ``data_dir``. The key file
#   (mode 0600, refused when group or others can read it) holds one or more keys, newest first: the newest encrypts,
#   any decrypts (MultiFernet), so ``rotate_key`` can re-encrypt everything without a moment where data is unreadable.
#   ``meta.key_check`` holds a token under the current key, so a wrong or lost key file is refused at start-up
#   instead of silently creating a new key that cannot read the existing templates.
# * Erasure deletes a person's templates, pictures and captures, removes the person id, score and margin from their
#   events, deletes their presence and attendance, redacts earlier audit details about them, keeps only a tombstone
#   (id and erased_at) and then checkpoints the WAL, VACUUMs and truncates the WAL again, so no page of the file, no
#   free page and no WAL frame still holds the name or the old ciphertexts. ``secure_delete`` zeroes freed content
#   meanwhile. The store cannot reach copies outside its files (backups, file-system snapshots, blocks the file
#   system freed): those need the key, which ``rotate_key(retire_old_keys=True)`` takes away.
# * Times are stored as fixed-width UTC ISO-8601 text (``2026-11-21T06:00:00.000000+00:00``), so text order is
#   time order and retention is an index range.

ID_CHUNK: Final = 500
"""How many ids one ``IN (...)`` statement names."""


def stored_time(value: datetime) -> str:
    """Fixed-width UTC ISO text; naive datetimes are refused (rollcall only speaks aware UTC time)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) time")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def stored_time_or_none(value: datetime | None) -> str | None:
    """:func:`stored_time`, with None kept."""
    return None if value is None else stored_time(value)


def read_time(text: str) -> datetime:
    """A stored time read back (aware, UTC)."""
    return datetime.fromisoformat(text)


def read_time_or_none(text: str | None) -> datetime | None:
    """:func:`read_time`, with None kept."""
    return None if text is None else read_time(text)


def details_json(details: Mapping[str, object] | None) -> str:
    """Audit details as compact JSON with sorted keys (erasure searches it for a person's id and name)."""
    return json.dumps(dict(details or {}), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def id_chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    """``items`` in slices of at most :data:`ID_CHUNK` (SQLite limits the parameters of one statement)."""
    for start in range(0, len(items), ID_CHUNK):
        yield items[start : start + ID_CHUNK]


class StoreCore:
    """The database, the picture folder and the key file that every part of :class:`~hub.store.HubStore` works on."""

    path: Path
    data_dir: Path
    key_file: Path
    db: sqlite_utils.Database
    _fernet: MultiFernet | None
    _key_signature: tuple[int, int, int] | None

    @property
    def schema_version(self) -> int:
        """The database's schema version (``PRAGMA user_version``)."""
        return user_version(self.db.conn)

    def write_batch(self) -> contextlib.AbstractContextManager[None]:
        """Many writes, one commit (see :func:`hub.store.schema.write_batch`)."""
        return write_batch(self.db)

    def get_meta(self, key: str) -> str | None:
        """A value from the meta table; None when unset."""
        row = self.db.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a value in the meta table."""
        with transaction(self.db) as tx:
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def set_metas(self, items: Iterable[tuple[str, str]]) -> None:
        """Set many (key, value) pairs in the meta table in one statement."""
        with transaction(self.db) as tx:
            tx.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                list(items),
            )

    def _unlink(self, relative: Iterable[str]) -> None:
        for rel in relative:
            (self.data_dir / rel).unlink(missing_ok=True)

    def _compact(self) -> bool:
        """Checkpoint and truncate the WAL, VACUUM, and again; True when both checkpoints completed."""
        conn = self.db.conn
        first = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        conn.execute("VACUUM")
        second = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return bool(first[0] == 0 and second[0] == 0)
