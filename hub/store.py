"""The hub's SQLite store: versioned schema, people and encrypted face templates, events, snapshots, erasure."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import sqlite_utils
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from ulid import ULID

from edge.protocol import wire
from edge.protocol.files import write_atomic  # temp file, fsync, rename, fsync folder; mode 0600
from edge.runtime.keys import KeyFileError, ensure_key, read_keys
from hub.config import HubSettings

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

APPLICATION_ID: Final = 0x52434842
"""SQLite header ``application_id`` ('RCHB') marking a rollcall hub database, so the hub never adopts another file."""

BUSY_TIMEOUT_MS: Final = 10_000
"""How long a statement waits for another connection's lock before failing."""

DEVICE_ROLES: Final = ("entrance", "exit", "both")
EVENT_TYPES: Final = ("seen", "left")
PRESENCE_STATES: Final = ("in", "out", "unknown")
CAPTURE_PURPOSES: Final = ("enrol", "snapshot")

MAX_DEAD_LETTER_BYTES: Final = 256 * 1024
"""Payload bytes kept per dead letter (the full size is recorded in ``size``)."""

MAX_NAME_CHARS: Final = 256
"""A person's name travels in presence and galleries (wire ShortText)."""

_KEY_CHECK: Final = b"rollcall-hub-key-check-1"
_ID_CHUNK: Final = 500

Migration = Callable[[sqlite_utils.Database], None]
"""One schema step; it runs inside a transaction and must not commit, VACUUM or change PRAGMA foreign_keys."""

SnapshotOutcome = Literal["stored", "duplicate", "discarded", "unknown_event"]
"""What :meth:`HubStore.save_snapshot` did; every outcome but ``unknown_event`` may be acked."""

CaptureOutcome = Literal["stored", "duplicate", "discarded"]
"""What :meth:`HubStore.save_capture` did; every outcome may be acked."""


class StoreError(Exception):
    """The store cannot do what was asked: a database or key file it must not use, or a broken invariant."""


class NotFound(StoreError):
    """The person, template or device named does not exist (or the person was erased)."""


# --- time ------------------------------------------------------------------------------------------------------


def _ts(value: datetime) -> str:
    """Fixed-width UTC ISO text; naive datetimes are refused (rollcall only speaks aware UTC time)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) time")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _ts_or_none(value: datetime | None) -> str | None:
    return None if value is None else _ts(value)


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _dt_or_none(text: str | None) -> datetime | None:
    return None if text is None else _dt(text)


# --- schema ----------------------------------------------------------------------------------------------------


def _enum_triggers(db: sqlite_utils.Database, table: str, column: str, allowed: Sequence[str]) -> None:
    """CHECK ``column IN allowed`` as triggers (sqlite-utils' create() has no CHECK clause); NULL passes."""
    values = ", ".join(f"'{value}'" for value in allowed)
    message = f"{table}.{column} must be one of {', '.join(allowed)}"
    for when, event in (("insert", "INSERT"), ("update", f"UPDATE OF {column}")):
        db.execute(
            f"CREATE TRIGGER {table}_{column}_check_{when} BEFORE {event} ON {table} "
            f"WHEN NEW.{column} NOT IN ({values}) BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )


def _v1_tables(db: sqlite_utils.Database) -> None:
    """Version 1: every table the hub keeps."""
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.table("meta").create({"key": str, "value": str}, pk="key", not_null={"value"})
    db.table("people").create(
        {"id": str, "name": str, "created_at": str, "updated_at": str, "erased_at": str},
        pk="id",
        not_null={"created_at", "updated_at"},  # name is NULL only on an erased person's tombstone
    )
    db.table("templates").create(
        {
            "id": int,
            "person_id": str,
            "model_id": str,
            "dim": int,
            "embedding": bytes,  # Fernet token of the little-endian float32 vector
            "quality": float,
            "source": str,  # "photo:<name>" or "capture:<capture_id>"
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("person_id", "people", "id")],
        not_null={"person_id", "model_id", "dim", "embedding", "source", "created_at"},
    )
    db.table("templates").create_index(["person_id"])
    db.table("templates").create_index(["model_id", "person_id"])
    db.table("devices").create(
        {
            "id": str,
            "name": str,
            "role": str,
            "status": str,
            "status_at": str,
            "last_seen": str,
            "health": str,  # JSON of the latest wire.Health
            "gallery_version": int,  # the version the device reports it runs
            "gallery_sent_version": int,  # the version the hub published for it
            "delivered_seq": int,  # highest seq up to which every event of the device is stored
            "delivered_through": str,  # event time up to which the device has delivered everything
        },
        pk="id",
        not_null={"role", "status", "gallery_version", "gallery_sent_version"},
        defaults={"role": "both", "status": "unknown", "gallery_version": 0, "gallery_sent_version": 0},
    )
    _enum_triggers(db, "devices", "role", DEVICE_ROLES)
    # No foreign keys from events to devices or people: events are facts the devices report (a device may name a
    # person its stale gallery still holds); the hub stores them as they came and interprets them later.
    db.table("events").create(
        {
            "event_id": str,
            "device": str,
            "seq": int,
            "at": str,
            "received_at": str,
            "type": str,
            "person_id": str,
            "score": float,
            "margin": float,
            "track": int,
            "quality": float,
            "has_snapshot": int,
            "snapshot_file": str,
            "clock_skew_s": float,
            "gallery_version": int,
            "redacted": int,  # 1 once the person was erased from this event
        },
        pk="event_id",
        not_null={"device", "seq", "at", "received_at", "type", "track", "quality", "has_snapshot", "redacted"},
        defaults={"has_snapshot": 0, "redacted": 0},
    )
    _enum_triggers(db, "events", "type", EVENT_TYPES)
    db.table("events").create_index(["device", "seq"], unique=True)
    db.table("events").create_index(["person_id"])
    db.table("snapshots").create(
        {"event_id": str, "file": str, "bytes": int, "created_at": str},
        pk="event_id",
        foreign_keys=[("event_id", "events", "event_id")],
        not_null={"file", "bytes", "created_at"},
    )
    db.table("presence").create(
        {"person_id": str, "state": str, "since": str, "door": str, "event_id": str, "updated_at": str},
        pk="person_id",
        foreign_keys=[("person_id", "people", "id")],
        not_null={"state", "updated_at"},
    )
    _enum_triggers(db, "presence", "state", PRESENCE_STATES)
    db.table("attendance").create(
        {
            "person_id": str,
            "day": str,  # YYYY-MM-DD in the site's time zone
            "first_in": str,
            "last_out": str,
            "present_s": float,
            "status": str,
            "updated_at": str,
        },
        pk=("person_id", "day"),
        foreign_keys=[("person_id", "people", "id")],
        not_null={"present_s", "updated_at"},
        defaults={"present_s": 0.0},
    )
    db.table("attendance").create_index(["day"])
    db.table("dead_letters").create(
        {"id": int, "received_at": str, "topic": str, "reason": str, "size": int, "payload": bytes},
        pk="id",
        not_null={"received_at", "topic", "reason", "size", "payload"},  # payload: Fernet token of the raw bytes
    )
    db.table("audit").create(
        {"id": int, "at": str, "actor": str, "action": str, "subject": str, "details": str},
        pk="id",
        not_null={"at", "actor", "action", "details"},
    )
    db.table("audit").create_index(["subject"])
    db.table("captures").create(
        {
            "capture_id": str,
            "device": str,
            "command_id": str,
            "purpose": str,
            "person_id": str,
            "idx": int,
            "total": int,
            "final": int,
            "quality": float,
            "file": str,
            "bytes": int,
            "at": str,
            "created_at": str,
        },
        pk="capture_id",
        foreign_keys=[("person_id", "people", "id")],
        not_null={"device", "command_id", "purpose", "idx", "total", "final", "file", "bytes", "at", "created_at"},
    )
    _enum_triggers(db, "captures", "purpose", CAPTURE_PURPOSES)
    db.table("captures").create_index(["person_id"])
    db.table("captures").create_index(["command_id"])


def _v2_model_pack_and_retention_indexes(db: sqlite_utils.Database) -> None:
    """Version 2: the model pack each device runs, and the indexes retention walks."""
    db.table("devices").add_column("model_pack", str)
    db.table("events").create_index(["at"])
    db.table("dead_letters").create_index(["received_at"])


def _v3_attendance_photos_and_person_index(db: sqlite_utils.Database) -> None:
    """Version 3: which events' photos show a day's first in and last out, and events looked up by person."""
    attendance = db.table("attendance")
    attendance.add_column("first_in_event", str)
    attendance.add_column("last_out_event", str)
    db.table("events").create_index(["person_id", "at"])


def _v4_workstation_agents(db: sqlite_utils.Database) -> None:
    """Version 4: workstation agents, their merged activity and the change log of their watched folders."""
    db.table("agents").create(
        {
            "id": str,
            "status": str,
            "status_at": str,
            "last_seen": str,
            "user": str,
            "window_title": str,
            "window_app": str,
            "state": str,
            "state_since": str,
        },
        pk="id",
    )
    db.table("agent_activity").create(
        {
            "event_id": str,
            "agent": str,
            "seq": int,
            "at": str,
            "received_at": str,
            "user": str,
            "session": str,
            "intervals": str,
            "window": str,
        },
        pk="event_id",
        not_null={"agent", "seq", "at", "received_at"},
    )
    db.table("agent_activity").create_index(["agent", "at"])
    db.table("file_changes").create(
        {"id": int, "event_id": str, "agent": str, "at": str, "path": str, "change": str, "dest_path": str},
        pk="id",
        not_null={"event_id", "agent", "at", "path", "change"},
    )
    db.table("file_changes").create_index(["agent", "at"])


MIGRATIONS: list[Migration] = [
    _v1_tables,
    _v2_model_pack_and_retention_indexes,
    _v3_attendance_photos_and_person_index,
    _v4_workstation_agents,
]
"""Schema steps in order; the database's ``PRAGMA user_version`` is the number applied. Only ever append."""


_LOCKS_GUARD = threading.Lock()


def _connection_lock(db: sqlite_utils.Database) -> threading.RLock:
    """The lock that serialises transactions on one database object (sqlite3 connections take no attributes)."""
    with _LOCKS_GUARD:
        lock: threading.RLock | None = db.__dict__.get("_rollcall_transaction_lock")
        if lock is None:
            lock = threading.RLock()
            db.__dict__["_rollcall_transaction_lock"] = lock
        return lock


@contextlib.contextmanager
def _transaction(db: sqlite_utils.Database) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on any exception. Takes the write lock up front.

    One transaction at a time per connection: a second thread (the Telegram bot's reader aside, which has its own
    store) waits here instead of nesting into the first one's transaction.
    """
    with _connection_lock(db):
        yield from _in_transaction(db.conn)


def _in_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    if conn.in_transaction:
        raise StoreError("a transaction is already open on this connection")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite_utils.Database, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply the steps of ``migrations`` the database lacks, each in its own transaction; return the version.

    Refuses a database from a newer build (its version is beyond ``len(migrations)``), a non-empty file that is no
    rollcall hub database, and a file another application marked as its own.
    """
    conn = db.conn
    current = _user_version(conn)
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if app_id not in (0, APPLICATION_ID) or (current > 0 and app_id != APPLICATION_ID):
        raise StoreError(f"{_describe(db)} is not a rollcall hub database (application_id {app_id:#x})")
    if current == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise StoreError(f"{_describe(db)} already holds tables but no rollcall schema version; not adopting it")
    if current > len(migrations):
        raise StoreError(
            f"{_describe(db)} has schema version {current}, newer than the {len(migrations)} this build knows: "
            "upgrade rollcall (never open it with an older build)"
        )
    for version in range(current + 1, len(migrations) + 1):
        with _transaction(db) as tx:
            if _user_version(tx) >= version:  # another process migrated while we waited for the lock
                continue
            migrations[version - 1](db)
            tx.execute(f"PRAGMA user_version = {version}")
    return _user_version(conn)


def _describe(db: sqlite_utils.Database) -> str:
    row = db.conn.execute("PRAGMA database_list").fetchone()
    return f"database {row[2] or ':memory:'}"


def open_database(path: Path, *, migrations: Sequence[Migration] = MIGRATIONS) -> sqlite_utils.Database:
    """Open (creating, mode 0600) the hub database at ``path``, set its pragmas and bring its schema up to date.

    WAL (readers never block the writer), ``synchronous=FULL`` (a commit survives a power cut before the hub acks;
    see the notes at the top of this module), ``foreign_keys=ON``, ``secure_delete=ON``, a busy timeout.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():  # SQLite gives its WAL and shm files the mode of the database file
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    try:
        # The hub opens the store on its main thread and hands it to its one writer thread: one user at a time.
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from exc
    try:
        db = sqlite_utils.Database(conn, execute_plugins=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        if mode != "wal":
            raise StoreError(f"database {path}: cannot switch to WAL mode (got {mode!r}); is it on a network share?")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA secure_delete = ON")
        if conn.execute("PRAGMA foreign_keys").fetchone()[0] != 1:
            raise StoreError("this SQLite build cannot enforce foreign keys")
        migrate(db, migrations)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"database {path} is unreadable or corrupt ({exc})") from exc
    except BaseException:
        conn.close()
        raise
    return db


# --- rows ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """An event as the hub received it: the validated payload, when it arrived, the device's clock skew if known."""

    event: wire.Event
    received_at: datetime
    clock_skew_s: float | None = None


@dataclass(frozen=True, slots=True)
class Person:
    """A person the hub knows; an erased person is a tombstone with ``name`` None and ``erased_at`` set."""

    id: str
    name: str | None
    created_at: datetime
    updated_at: datetime
    erased_at: datetime | None


@dataclass(frozen=True, slots=True)
class Device:
    """A door device as the hub last saw it."""

    id: str
    name: str | None
    role: str
    status: str
    status_at: datetime | None
    last_seen: datetime | None
    health: dict[str, Any] | None
    gallery_version: int
    gallery_sent_version: int
    model_pack: str | None
    delivered_seq: int | None
    delivered_through: datetime | None


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


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the hub could not use, with its (decrypted, possibly truncated) payload."""

    id: int
    received_at: datetime
    topic: str
    reason: str
    size: int
    payload: bytes


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


_DEVICE_COLUMNS: Final = frozenset(
    {
        "name",
        "role",
        "status",
        "status_at",
        "last_seen",
        "health",
        "gallery_version",
        "gallery_sent_version",
        "model_pack",
        "delivered_seq",
        "delivered_through",
    }
)


def _device_value(column: str, value: object) -> object:
    if column == "role" and value not in DEVICE_ROLES:
        raise ValueError(f"device role must be one of {', '.join(DEVICE_ROLES)}, got {value!r}")
    if isinstance(value, datetime):
        return _ts(value)
    if column == "health" and value is not None:
        if isinstance(value, wire.Health):
            return value.model_dump_json()
        if isinstance(value, Mapping):
            return json.dumps(value, ensure_ascii=False, sort_keys=True)
        raise TypeError(f"device health must be a wire.Health or a mapping, got {type(value).__name__}")
    if value is not None and not isinstance(value, str | int | float):
        raise TypeError(f"device {column} must be text, a number, a datetime or None, got {type(value).__name__}")
    return value


def _json(details: Mapping[str, object] | None) -> str:
    return json.dumps(dict(details or {}), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _ID_CHUNK):
        yield items[start : start + _ID_CHUNK]


# --- the store -------------------------------------------------------------------------------------------------


class HubStore:
    """The hub's data: one SQLite database, encrypted picture files under ``data_dir``, the Fernet key file.

    Not thread-safe: the hub's single writer thread owns it (other readers open their own connection with
    :func:`open_database`). Every ``now`` is an aware datetime the caller passes; the store never reads the clock.
    """

    def __init__(self, database: Path, data_dir: Path, key_file: Path) -> None:
        """Open (creating and migrating) the database; create the key file (0600) if there is no encrypted data yet."""
        self.path = Path(database)
        self.data_dir = Path(data_dir)
        self.key_file = Path(key_file)
        self._fernet: MultiFernet | None = None
        self._key_signature: tuple[int, int, int] | None = None
        self.db = open_database(self.path)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._check_key()
        except BaseException:
            self.db.close()
            raise

    @classmethod
    def from_settings(cls, settings: HubSettings) -> HubStore:
        """The store at the paths of the hub's configuration."""
        return cls(settings.database, settings.data_dir, settings.key_file)

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    def __enter__(self) -> HubStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The database's schema version (``PRAGMA user_version``)."""
        return _user_version(self.db.conn)

    # --- keys --------------------------------------------------------------------------------------------------

    def _check_key(self) -> None:
        check = self.get_meta("key_check")
        if not self.key_file.exists():
            encrypted = self.db.conn.execute(
                "SELECT (SELECT count(*) FROM templates) + (SELECT count(*) FROM snapshots) "
                "+ (SELECT count(*) FROM captures) + (SELECT count(*) FROM dead_letters)"
            ).fetchone()[0]
            if check is not None or encrypted:
                raise StoreError(
                    f"key file {self.key_file} is missing but {self.path} holds data encrypted with it; restore the "
                    "key file from backup (a new key cannot read the existing templates and pictures)"
                )
        try:
            ensure_key(self.key_file)
        except KeyFileError as exc:
            raise StoreError(str(exc)) from None
        fernet = self._crypto()
        if check is None:
            self.set_meta("key_check", fernet.encrypt(_KEY_CHECK).decode())
            return
        try:
            fernet.decrypt(check.encode())
        except InvalidToken:
            raise StoreError(
                f"key file {self.key_file} does not hold the key {self.path} was encrypted with; "
                "restore the right key file"
            ) from None

    def _crypto(self) -> MultiFernet:
        """The keys of the key file, newest first; re-read when the file changes (a rotation by another process)."""
        try:
            info = self.key_file.stat()
        except OSError as exc:
            raise StoreError(f"cannot read key file {self.key_file}: {exc.strerror or exc}") from None
        signature = (info.st_ino, info.st_mtime_ns, info.st_size)
        if self._fernet is None or signature != self._key_signature:
            try:
                keys = read_keys(self.key_file)
            except KeyFileError as exc:
                raise StoreError(str(exc)) from None
            except OSError as exc:
                raise StoreError(f"cannot read key file {self.key_file}: {exc.strerror or exc}") from None
            self._fernet = MultiFernet([Fernet(key) for key in keys])
            self._key_signature = signature
        return self._fernet

    def _decrypt(self, token: bytes, what: str) -> bytes:
        try:
            return self._crypto().decrypt(token)
        except InvalidToken:
            raise StoreError(f"{what} cannot be decrypted with the keys in {self.key_file}") from None

    def rotate_key(self, *, retire_old_keys: bool = False) -> tuple[int, int]:
        """Put a new key first in the key file and re-encrypt every template, dead letter and picture file with it.

        Returns (database rows, files) re-encrypted. The key file is written first and keeps the old keys, so a stop
        part-way leaves everything readable; run it again to finish. With ``retire_old_keys`` the old keys are
        dropped from the key file once everything is re-encrypted and the database is compacted, so copies made
        earlier (backups) become unreadable with the new key file: do that only with the hub stopped, or from the
        hub process, so nothing is written under an old key meanwhile.
        """
        conn = self.db.conn
        # Everything must decrypt before anything changes: refuse a rotation that would strand unreadable data.
        rows = conn.execute("SELECT id, embedding FROM templates").fetchall()
        letters = conn.execute("SELECT id, payload FROM dead_letters").fetchall()
        for _, token in [*rows, *letters]:
            self._decrypt(token, "a database row")
        files = self._picture_files()
        for path in files:
            self._decrypt(path.read_bytes(), f"picture {path}")
        try:
            keys = read_keys(self.key_file)
        except KeyFileError as exc:
            raise StoreError(str(exc)) from None
        new_key = Fernet.generate_key()
        write_atomic(self.key_file, b"".join(key + b"\n" for key in [new_key, *keys]))
        self._fernet = None  # re-read the key file now, whatever its stat says
        fernet = self._crypto()
        with _transaction(self.db) as tx:
            tx.executemany("UPDATE templates SET embedding = ? WHERE id = ?", [(fernet.rotate(t), i) for i, t in rows])
            tx.executemany(
                "UPDATE dead_letters SET payload = ? WHERE id = ?", [(fernet.rotate(t), i) for i, t in letters]
            )
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('key_check', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (fernet.encrypt(_KEY_CHECK).decode(),),
            )
        for path in files:
            write_atomic(path, fernet.rotate(path.read_bytes()))
        if retire_old_keys:
            self._compact()  # the old ciphertexts leave free pages and the WAL before their key goes
            write_atomic(self.key_file, new_key + b"\n")
            self._fernet = None
            self._crypto()
        return len(rows) + len(letters), len(files)

    def _picture_files(self) -> list[Path]:
        rows = self.db.conn.execute("SELECT file FROM snapshots UNION ALL SELECT file FROM captures").fetchall()
        return [path for (rel,) in rows if (path := self.data_dir / rel).exists()]

    # --- meta, audit, dead letters -----------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A value from the meta table; None when unset."""
        row = self.db.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a value in the meta table."""
        with _transaction(self.db) as tx:
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def audit(
        self, actor: str, action: str, subject: str | None, details: Mapping[str, object] | None, now: datetime
    ) -> int:
        """Append a row to the audit log (who changed what through the API); returns its id."""
        with _transaction(self.db) as tx:
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
            (_ts(now), actor, action, subject, _json(details)),
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
            {"id": i, "at": _dt(at), "actor": actor, "action": action, "subject": subj, "details": json.loads(det)}
            for i, at, actor, action, subj, det in rows
        ]

    def record_dead_letter(self, topic: str, reason: str, payload: bytes, now: datetime) -> int:
        """Keep a message the hub could not use, with the reason; the payload is encrypted (it may hold a face)."""
        with _transaction(self.db) as tx:
            return self._dead_letter(tx, topic, reason, payload, now)

    def _dead_letter(self, tx: sqlite3.Connection, topic: str, reason: str, payload: bytes, now: datetime) -> int:
        token = self._crypto().encrypt(payload[:MAX_DEAD_LETTER_BYTES])
        cur = tx.execute(
            "INSERT INTO dead_letters (received_at, topic, reason, size, payload) VALUES (?, ?, ?, ?, ?)",
            (_ts(now), topic[:1024], reason[:2000], len(payload), token),
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
            DeadLetter(i, _dt(at), topic, reason, size, self._decrypt(token, f"dead letter {i}"))
            for i, at, topic, reason, size, token in rows
        ]

    # --- events ------------------------------------------------------------------------------------------------

    def insert_events(self, rows: Iterable[ReceivedEvent]) -> list[str]:
        """Store a batch of events in one transaction; return the ids stored now (duplicates are ignored).

        Every event of the batch is safe to ack once this returns: it is stored now, was stored before, or (when
        its device already used its ``seq`` for another event) is kept as a dead letter with the reason. An event
        naming an erased person is stored without the person, score and margin.
        """
        inserted: list[str] = []
        with _transaction(self.db) as tx:
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
                            _ts(event.at),
                            _ts(row.received_at),
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
        with _transaction(self.db) as tx:
            row = tx.execute(
                "SELECT delivered_seq, delivered_through FROM devices WHERE id = ?", (device_id,)
            ).fetchone()
            seq, through = (row[0], row[1]) if row is not None else (None, None)
            if seq is None:
                low = tx.execute("SELECT min(seq) FROM events WHERE device = ?", (device_id,)).fetchone()[0]
                if low is None:
                    return _dt_or_none(through)
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
            return _dt_or_none(through)

    # --- people and templates ----------------------------------------------------------------------------------

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
        stamp = _ts(now)
        with _transaction(self.db) as tx:
            if tx.execute("SELECT 1 FROM people WHERE id = ?", (pid,)).fetchone() is not None:
                raise StoreError(f"person id {pid!r} is taken (ids of erased people are never reused)")
            tx.execute(
                "INSERT INTO people (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)", (pid, name, stamp, stamp)
            )
        return pid

    def rename_person(self, person_id: str, name: str, now: datetime) -> None:
        """Change a person's name; raises :class:`NotFound` for an unknown or erased person."""
        name = self._check_name(name)
        with _transaction(self.db) as tx:
            cur = tx.execute(
                "UPDATE people SET name = ?, updated_at = ? WHERE id = ? AND erased_at IS NULL",
                (name, _ts(now), person_id),
            )
            if cur.rowcount != 1:
                raise NotFound(f"no person {person_id!r}")

    @staticmethod
    def _person(row: Sequence[Any]) -> Person:
        return Person(row[0], row[1], _dt(row[2]), _dt(row[3]), _dt_or_none(row[4]))

    def get_person(self, person_id: str) -> Person | None:
        """A person (an erased one as a tombstone); None when the id was never used."""
        row = self.db.conn.execute(
            "SELECT id, name, created_at, updated_at, erased_at FROM people WHERE id = ?", (person_id,)
        ).fetchone()
        return None if row is None else self._person(row)

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
        with _transaction(self.db) as tx:
            row = tx.execute("SELECT erased_at FROM people WHERE id = ?", (person_id,)).fetchone()
            if row is None or row[0] is not None:
                raise NotFound(f"no person {person_id!r}")
            cur = tx.execute(
                "INSERT INTO templates (person_id, model_id, dim, embedding, quality, source, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (person_id, model_id, int(vector.size), token, quality, source, _ts(now)),
            )
            return int(cur.lastrowid or 0)

    def delete_template(self, template_id: int) -> None:
        """Delete one template; raises :class:`NotFound` when there is none with that id."""
        with _transaction(self.db) as tx:
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

        Leaves a tombstone (id, created_at, erased_at) so the id is never reused, writes an audit row without the
        name, then checkpoints the WAL, VACUUMs and truncates the WAL so no trace remains in the files. Running it
        again for an erased person repeats the clean-up (after an interruption, say). Devices forget the person when
        the hub publishes their next gallery.
        """
        with _transaction(self.db) as tx:
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
            audit_redacted = self._redact_audit(tx, person_id, name)
            dead_letters = self._erase_dead_letters(tx, person_id, name)
            tx.execute(
                "UPDATE people SET name = NULL, updated_at = ?, erased_at = coalesce(erased_at, ?) WHERE id = ?",
                (_ts(now), _ts(now), person_id),
            )
            details = {
                "templates": templates,
                "snapshots": snapshots,
                "captures": captures,
                "events": events,
                "dead_letters": dead_letters,
                "audit_redacted": audit_redacted,
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

    # --- pictures ----------------------------------------------------------------------------------------------

    def _picture_path(self, folder: str, at: str, ident: str) -> str:
        when = _dt(at)
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
        with _transaction(self.db) as tx:
            tx.execute(
                "INSERT INTO snapshots (event_id, file, bytes, created_at) VALUES (?, ?, ?, ?)",
                (event_id, rel, len(jpeg), _ts(now)),
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
        at = _ts(capture.at)
        rel = self._picture_path("captures", at, capture.capture_id)
        write_atomic(self.data_dir / rel, self._crypto().encrypt(capture.data))
        with _transaction(self.db) as tx:
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
                    _ts(now),
                ),
            )
        return "stored"

    def load_capture(self, capture_id: str) -> bytes | None:
        """The decrypted JPEG of a capture; None when there is none."""
        row = self.db.conn.execute("SELECT file FROM captures WHERE capture_id = ?", (capture_id,)).fetchone()
        return self._load_picture(None if row is None else row[0], f"capture {capture_id}")

    def purge(self, before: datetime, snapshots_before: datetime) -> tuple[int, int]:
        """Retention: delete events older than ``before`` and snapshots older than ``snapshots_before``.

        Returns (events deleted, snapshot pictures deleted). A snapshot goes with its event at the latest; snapshot
        captures (whole-view pictures) count as snapshot pictures; enrolment captures stay until their person is
        erased (new models need them to make templates again). Dead letters older than ``before`` go too.
        """
        events_cut = _ts(before)
        pictures_cut = max(events_cut, _ts(snapshots_before))
        with _transaction(self.db) as tx:
            doomed = tx.execute(
                "SELECT s.event_id, s.file FROM snapshots s JOIN events e ON e.event_id = s.event_id WHERE e.at < ?",
                (pictures_cut,),
            ).fetchall()
            captures = tx.execute(
                "SELECT capture_id, file FROM captures WHERE purpose = 'snapshot' AND at < ?", (_ts(snapshots_before),)
            ).fetchall()
            for ids in _chunks([event_id for event_id, _ in doomed]):
                marks = ", ".join("?" * len(ids))
                tx.execute(f"DELETE FROM snapshots WHERE event_id IN ({marks})", ids)
                tx.execute(f"UPDATE events SET snapshot_file = NULL WHERE event_id IN ({marks})", ids)
            tx.executemany("DELETE FROM captures WHERE capture_id = ?", [(cid,) for cid, _ in captures])
            events = tx.execute("DELETE FROM events WHERE at < ?", (events_cut,)).rowcount
            tx.execute("DELETE FROM dead_letters WHERE received_at < ?", (events_cut,))
            self._unlink([rel for _, rel in doomed] + [rel for _, rel in captures])
        return events, len(doomed) + len(captures)

    # --- workstation agents ---------------------------------------------------------------------------------

    def insert_activity(self, activity: wire.Activity, received_at: datetime) -> bool:
        """Store one activity batch (and its file changes) once; False when it was stored before."""
        with _transaction(self.db) as tx:
            cur = tx.execute(
                "INSERT INTO agent_activity (event_id, agent, seq, at, received_at, user, session, intervals, window) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING",
                (
                    activity.event_id,
                    activity.agent,
                    activity.seq,
                    _ts(activity.at),
                    _ts(received_at),
                    activity.user,
                    activity.session,
                    json.dumps([i.model_dump(mode="json") for i in activity.intervals]),
                    json.dumps(activity.window.model_dump(mode="json")) if activity.window else None,
                ),
            )
            if cur.rowcount != 1:
                return False
            for change in activity.files:
                tx.execute(
                    "INSERT INTO file_changes (event_id, agent, at, path, change, dest_path) VALUES (?, ?, ?, ?, ?, ?)",
                    (activity.event_id, activity.agent, _ts(change.at), change.path, change.change, change.dest_path),
                )
            latest = activity.intervals[-1] if activity.intervals else None
            fields: dict[str, object] = {"last_seen": _ts(received_at)}
            if activity.user is not None:
                fields["user"] = activity.user
            if activity.window is not None:
                fields["window_title"] = activity.window.title
                fields["window_app"] = activity.window.app
            if latest is not None:
                fields["state"] = latest.state
                fields["state_since"] = _ts(latest.start)
            self._upsert_agent(tx, activity.agent, fields)
        return True

    @staticmethod
    def _upsert_agent(tx: sqlite3.Connection, agent: str, fields: Mapping[str, object]) -> None:
        columns = sorted(fields)
        update = ", ".join(f"{c} = excluded.{c}" for c in columns)
        marks = ", ".join("?" * (len(columns) + 1))
        tx.execute(
            f"INSERT INTO agents (id{''.join(', ' + c for c in columns)}) VALUES ({marks}) "
            f"ON CONFLICT(id) DO UPDATE SET {update}",
            [agent, *[fields[c] for c in columns]],
        )

    def set_agent_status(self, agent: str, status: str, at: datetime, now: datetime) -> None:
        """An agent's retained status (online, offline, stopped)."""
        wire.check_id(agent, "agent id")
        with _transaction(self.db) as tx:
            self._upsert_agent(tx, agent, {"status": status, "status_at": _ts(at), "last_seen": _ts(now)})

    def list_agents(self) -> list[dict[str, Any]]:
        """Every workstation agent with its latest state."""
        cur = self.db.conn.execute("SELECT * FROM agents ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def agent_activity(self, agent: str, limit: int = 100) -> list[dict[str, Any]]:
        """An agent's newest activity batches (intervals and window decoded)."""
        cur = self.db.conn.execute(
            "SELECT event_id, seq, at, user, session, intervals, window FROM agent_activity WHERE agent = ? "
            "ORDER BY at DESC LIMIT ?",
            (agent, limit),
        )
        return [
            {
                "event_id": e,
                "seq": s,
                "at": a,
                "user": u,
                "session": se,
                "intervals": json.loads(i or "[]"),
                "window": json.loads(w) if w else None,
            }
            for e, s, a, u, se, i, w in cur.fetchall()
        ]

    def file_changes(self, agent: str, limit: int = 200) -> list[dict[str, Any]]:
        """An agent's change log, newest first."""
        cur = self.db.conn.execute(
            "SELECT at, path, change, dest_path FROM file_changes WHERE agent = ? ORDER BY at DESC, id DESC LIMIT ?",
            (agent, limit),
        )
        return [{"at": a, "path": p, "change": c, "dest_path": d} for a, p, c, d in cur.fetchall()]

    # --- devices -----------------------------------------------------------------------------------------------

    def upsert_device(self, device_id: str, **fields: object) -> None:
        """Create the device if new and set the given columns (datetimes as UTC text, health as JSON).

        Columns: name, role (entrance, exit or both), status, status_at, last_seen, health (wire.Health or a
        mapping), gallery_version, gallery_sent_version, model_pack, delivered_seq, delivered_through.
        """
        wire.check_id(device_id, "device id")
        unknown = sorted(set(fields) - _DEVICE_COLUMNS)
        if unknown:
            raise ValueError(f"unknown device field(s) {', '.join(unknown)}")
        columns = sorted(fields)
        values = [_device_value(column, fields[column]) for column in columns]
        marks = ", ".join("?" * (len(columns) + 1))
        update = ", ".join(f"{column} = excluded.{column}" for column in columns)
        conflict = f"DO UPDATE SET {update}" if columns else "DO NOTHING"
        with _transaction(self.db) as tx:
            tx.execute(
                f"INSERT INTO devices (id{''.join(', ' + c for c in columns)}) VALUES ({marks}) "
                f"ON CONFLICT(id) {conflict}",
                [device_id, *values],
            )

    _DEVICE_SELECT: Final = (
        "SELECT id, name, role, status, status_at, last_seen, health, gallery_version, gallery_sent_version, "
        "model_pack, delivered_seq, delivered_through FROM devices"
    )

    @staticmethod
    def _device(row: Sequence[Any]) -> Device:
        return Device(
            id=row[0],
            name=row[1],
            role=row[2],
            status=row[3],
            status_at=_dt_or_none(row[4]),
            last_seen=_dt_or_none(row[5]),
            health=None if row[6] is None else json.loads(row[6]),
            gallery_version=row[7],
            gallery_sent_version=row[8],
            model_pack=row[9],
            delivered_seq=row[10],
            delivered_through=_dt_or_none(row[11]),
        )

    def get_device(self, device_id: str) -> Device | None:
        """One device; None when unknown."""
        row = self.db.conn.execute(f"{self._DEVICE_SELECT} WHERE id = ?", (device_id,)).fetchone()
        return None if row is None else self._device(row)

    def list_devices(self) -> list[Device]:
        """Every device, by id."""
        return [self._device(row) for row in self.db.conn.execute(f"{self._DEVICE_SELECT} ORDER BY id")]

    # --- presence and attendance -------------------------------------------------------------------------------

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
        with _transaction(self.db) as tx:
            tx.execute(
                "INSERT INTO presence (person_id, state, since, door, event_id, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(person_id) DO UPDATE SET state = excluded.state, since = excluded.since, "
                "door = excluded.door, event_id = excluded.event_id, updated_at = excluded.updated_at",
                (person_id, state, _ts_or_none(since), door, event_id, _ts(now)),
            )

    def presence(self) -> list[PresenceRow]:
        """Every stored presence, by person id."""
        rows = self.db.conn.execute(
            "SELECT person_id, state, since, door, event_id, updated_at FROM presence ORDER BY person_id"
        )
        return [PresenceRow(p, s, _dt_or_none(since), d, e, _dt(u)) for p, s, since, d, e, u in rows]

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
    ) -> None:
        """Store one person's attendance for one (site-local) day, replacing the previous figures."""
        with _transaction(self.db) as tx:
            tx.execute(
                "INSERT INTO attendance (person_id, day, first_in, last_out, present_s, status, updated_at, "
                "first_in_event, last_out_event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(person_id, day) DO "
                "UPDATE SET first_in = excluded.first_in, last_out = excluded.last_out, "
                "present_s = excluded.present_s, "
                "status = excluded.status, updated_at = excluded.updated_at, first_in_event = excluded.first_in_event, "
                "last_out_event = excluded.last_out_event",
                (
                    person_id,
                    day.isoformat(),
                    _ts_or_none(first_in),
                    _ts_or_none(last_out),
                    present_s,
                    status,
                    _ts(now),
                    first_in_event,
                    last_out_event,
                ),
            )

    def attendance(self, day: date) -> list[AttendanceRow]:
        """Everyone's attendance on one day, by person id."""
        rows = self.db.conn.execute(
            "SELECT person_id, day, first_in, last_out, present_s, status, updated_at, first_in_event, last_out_event "
            "FROM attendance WHERE day = ? ORDER BY person_id",
            (day.isoformat(),),
        )
        return [
            AttendanceRow(p, date.fromisoformat(d), _dt_or_none(fi), _dt_or_none(lo), float(s), st, _dt(u), fe, le)
            for p, d, fi, lo, s, st, u, fe, le in rows
        ]

    def sightings(self, person_id: str, start: datetime, end: datetime) -> list[tuple[str, str, str, datetime, bool]]:
        """(event_id, device, type, at, has_snapshot) of a person's events with start <= at < end, in time order."""
        rows = self.db.conn.execute(
            "SELECT event_id, device, type, at, has_snapshot FROM events WHERE person_id = ? AND at >= ? AND at < ? "
            "ORDER BY at",
            (person_id, _ts(start), _ts(end)),
        )
        return [(e, d, t, _dt(a), bool(h)) for e, d, t, a, h in rows]

    def recent_events(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest events first, as column -> value mappings."""
        cur = self.db.conn.execute("SELECT * FROM events ORDER BY at DESC, seq DESC LIMIT ?", (limit,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
