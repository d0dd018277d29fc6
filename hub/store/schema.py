"""The hub database's schema: its versioned migrations, how it is opened (pragmas), and transactions."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

import sqlite_utils

from hub.store.errors import StoreError

APPLICATION_ID: Final = 0x52434842
"""SQLite header ``application_id`` ('RCHB') marking a rollcall hub database, so the hub never adopts another file."""

BUSY_TIMEOUT_MS: Final = 10_000
"""How long a statement waits for another connection's lock before failing."""

DEVICE_ROLES: Final = ("entrance", "exit", "both")
EVENT_TYPES: Final = ("seen", "left")
PRESENCE_STATES: Final = ("in", "out", "unknown")
CAPTURE_PURPOSES: Final = ("enrol", "snapshot")

Migration = Callable[[sqlite_utils.Database], None]
"""One schema step; it runs inside a transaction and must not commit, VACUUM or change PRAGMA foreign_keys."""


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


def _v5_outbox_epochs(db: sqlite_utils.Database) -> None:
    """Version 5: the outbox epoch of every event and activity batch, and delivery tracked per (device, epoch).

    A device's sequence numbers count within its outbox's epoch (a new outbox file starts again at 1 under a new
    one), so an event is unique per (device, epoch, seq). Events from before epochs, and from devices that send
    none, have the epoch ``''``: one series per device, as before.
    """
    db.execute("ALTER TABLE events ADD COLUMN epoch TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE agent_activity ADD COLUMN epoch TEXT NOT NULL DEFAULT ''")
    db.execute("DROP INDEX idx_events_device_seq")
    db.table("events").create_index(["device", "epoch", "seq"], unique=True)
    db.table("device_epochs").create(
        {
            "device": str,
            "epoch": str,
            "first_seen": str,  # when the hub received the epoch's first event (orders a device's epochs)
            "delivered_seq": int,  # highest seq up to which every event of the epoch is stored
            "delivered_through": str,  # event time up to which the epoch has delivered everything
        },
        pk=("device", "epoch"),
        not_null={"first_seen"},
    )
    db.execute(
        "INSERT INTO device_epochs (device, epoch, first_seen, delivered_seq, delivered_through) "
        "SELECT d.id, '', coalesce((SELECT min(received_at) FROM events WHERE device = d.id), ''), "
        "d.delivered_seq, d.delivered_through FROM devices d "
        "WHERE d.delivered_seq IS NOT NULL OR EXISTS (SELECT 1 FROM events WHERE device = d.id)"
    )


def _v6_dead_letter_summaries(db: sqlite_utils.Database) -> None:
    """Version 6: dead letters kept one by one up to a limit per sender, reason and hour, then only counted."""
    letters = db.table("dead_letters")
    letters.add_column("sender", str)
    letters.add_column("hour", str)
    letters.add_column("count", int, not_null_default=1)
    letters.add_column("last_at", str)
    db.execute("UPDATE dead_letters SET sender = topic, last_at = received_at")
    letters.create_index(["hour", "sender", "reason"])


def _v7_device_retirement_and_signoff(db: sqlite_utils.Database) -> None:
    """Version 7: retired devices, the instant up to which a device's outbox was seen empty, and signed-off days.

    ``retired_at``: a retired device holds no day open and gets no gallery; its events stay and still count.
    ``drained_through``: a health report with an empty outbox proves delivery up to (a margin before) its time, so a
    door that sees nobody overnight still lets the day be signed off. ``attendance.final``: the day is signed off;
    its ``status`` keeps the outcome (``forgot_checkout`` stays visible).
    """
    devices = db.table("devices")
    devices.add_column("retired_at", str)
    devices.add_column("drained_through", str)
    db.execute("ALTER TABLE attendance ADD COLUMN final INTEGER NOT NULL DEFAULT 0")
    db.execute("UPDATE attendance SET final = 1 WHERE status = 'final'")
    db.table("attendance").create_index(["final", "day"])


def _v8_attendance_due(db: sqlite_utils.Database) -> None:
    """Version 8: the (person, day) pairs whose attendance new events changed and the hub has not recomputed yet.

    Marked in the transaction that stores the events, so a crash between storing and recomputing loses nothing: the
    hub recomputes what is left here when it starts. The writer recomputes them when no messages wait (a burst of
    arrivals moves presence first, attendance a moment later).
    """
    db.execute("CREATE TABLE attendance_due (person_id TEXT NOT NULL, day TEXT NOT NULL, PRIMARY KEY (person_id, day))")


MIGRATIONS: list[Migration] = [
    _v1_tables,
    _v2_model_pack_and_retention_indexes,
    _v3_attendance_photos_and_person_index,
    _v4_workstation_agents,
    _v5_outbox_epochs,
    _v6_dead_letter_summaries,
    _v7_device_retirement_and_signoff,
    _v8_attendance_due,
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
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on any exception. Takes the write lock up front.

    One transaction at a time per connection: a second thread (the Telegram bot's reader aside, which has its own
    store) waits here instead of nesting into the first one's transaction.
    """
    with _connection_lock(db):
        if db.__dict__.get("_rollcall_write_batch"):
            yield from _in_savepoint(db.conn)  # inside write_batch: one commit at its end
        else:
            yield from _in_transaction(db.conn)


@contextlib.contextmanager
def write_batch(db: sqlite_utils.Database) -> Iterator[None]:
    """Many writes, one commit: every :func:`transaction` inside (on this thread) joins this one as a savepoint.

    With ``synchronous=FULL`` every commit costs a sync of the WAL; derived rows the hub writes by the hundred
    (presence and attendance after a batch of events, the sign-off sweep) are committed together. A failing inner
    transaction rolls back to its savepoint only; an exception out of the batch rolls back all of it.
    """
    with _connection_lock(db):
        if db.__dict__.get("_rollcall_write_batch"):
            yield  # already in one: join it
            return
        db.__dict__["_rollcall_write_batch"] = True
        try:
            with contextlib.contextmanager(_in_transaction)(db.conn):
                yield
        finally:
            db.__dict__["_rollcall_write_batch"] = False


def _in_savepoint(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("SAVEPOINT rollcall_joined")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK TO rollcall_joined")
        conn.execute("RELEASE rollcall_joined")
        raise
    conn.execute("RELEASE rollcall_joined")


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


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version the database has (``PRAGMA user_version``)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite_utils.Database, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply the steps of ``migrations`` the database lacks, each in its own transaction; return the version.

    Refuses a database from a newer build (its version is beyond ``len(migrations)``), a non-empty file that is no
    rollcall hub database, and a file another application marked as its own.
    """
    conn = db.conn
    current = user_version(conn)
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
        with transaction(db) as tx:
            if user_version(tx) >= version:  # another process migrated while we waited for the lock
                continue
            migrations[version - 1](db)
            tx.execute(f"PRAGMA user_version = {version}")
    return user_version(conn)


def damaged_advice(path: Path) -> str:
    """What to do about a hub database that cannot be used: the same words wherever the hub finds one."""
    return (
        f"stop the hub and restore {path} from a backup; or move it aside (mv '{path}' '{path}.bad') and start the "
        "hub again with an empty database (people must be enrolled again, and the devices deliver only what their "
        f"outboxes still hold); `sqlite3 '{path}.bad' .recover` may save what can still be read"
    )


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """SQLite's quick check of the whole file, before the hub writes anything into it."""
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(5)").fetchall()]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems != ["ok"]:
        raise StoreError(
            f"database {path} is corrupt (quick check: {'; '.join(problems)[:300]}); {damaged_advice(path)}"
        )


def _describe(db: sqlite_utils.Database) -> str:
    row = db.conn.execute("PRAGMA database_list").fetchone()
    return f"database {row[2] or ':memory:'}"


def open_database(
    path: Path, *, migrations: Sequence[Migration] = MIGRATIONS, quick_check: bool = True
) -> sqlite_utils.Database:
    """Open (creating, mode 0600) the hub database at ``path``, set its pragmas and bring its schema up to date.

    A 0-byte file that exists, or one SQLite's quick check finds damaged (``quick_check``, on by default; it reads
    the whole file), is refused with what to do, before anything is written into it.

    WAL (readers never block the writer), ``synchronous=FULL`` (a commit survives a power cut before the hub acks;
    see the notes at the top of this module), ``foreign_keys=ON``, ``secure_delete=ON``, a busy timeout.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    wal = path.with_name(path.name + "-wal")
    if path.is_file() and path.stat().st_size == 0 and not (wal.is_file() and wal.stat().st_size > 0):
        # SQLite would take an existing 0-byte file for a new database and the hub would serve an empty site.
        raise StoreError(
            f"database {path} is empty (0 bytes) although it exists: whatever it held is gone (a truncated "
            f"file?); {damaged_advice(path)}. On a new installation, delete the empty file and start again"
        )
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
        if quick_check:
            _check_integrity(conn, path)
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
        raise StoreError(f"database {path} is unreadable or corrupt ({exc}); {damaged_advice(path)}") from exc
    except BaseException:
        conn.close()
        raise
    return db
