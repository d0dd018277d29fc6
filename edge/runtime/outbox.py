"""A durable, size-capped outbox in SQLite: messages wait here until the hub's ack names them."""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

log = logging.getLogger("rollcall.outbox")

# How it works, for the reader of the door device and the workstation agent:
#
# * A message is (topic, payload bytes) with a caller-chosen unique ``message_id`` (the event's ULID) and a
#   per-outbox sequence number ``seq`` that the caller writes into the payload, so ``add`` hands the number to a
#   ``build`` callback inside the same transaction that stores the message and advances the counter.
# * An attachment is the optional second message of a message (an event's snapshot). It is sent after its message
#   and acked on its own (``Ack.snapshot_ids``), so it may outlive its message.
# * Rows are deleted only by ``ack`` (the hub's application-level ack) or, for attachments, by the size cap. A broker
#   PUBACK only means the broker has it; the broker may still drop it, so it never deletes anything here.
# * ``max_bytes`` bounds the stored payload bytes (messages plus attachments), not the file: SQLite pages, indexes
#   and the WAL add overhead on top, and freed pages are reused rather than returned to the file system.
# * The file has an ``epoch``: a random 64-bit number made with the file and sent with every message (as 16 hex
#   digits). Sequence numbers count within an epoch, so a new file (a broken one moved aside, a 0-byte one) starts
#   again at seq 1 under a new epoch, and the hub keeps the two series apart instead of taking the new numbers for
#   reused old ones.
# * When the file system refuses a write (disk full, read-only, I/O error) the call raises OutboxWriteFailed and
#   changes nothing; the outbox logs that once, counts the messages and attachments it could not store, keeps the
#   error for health, and carries on by itself once a write works again (the counts then join the file's counters).

SCHEMA_VERSION = 1
"""The outbox schema this build writes and reads."""

APPLICATION_ID = 0x52434F42
"""SQLite header ``application_id`` ('RCOB') that marks a file as a rollcall outbox, so we never adopt another DB."""

MAX_BACKOFF_SHIFT = 4
"""Resend delays double per attempt up to ``2**4`` = 16 times the base delay."""

_ID_CHUNK = 500
"""Ids per ``IN (...)`` clause: far below SQLite's bound-parameter limit, even on old builds (999)."""

_META_KEYS = (
    "schema_version",
    "next_seq",
    "message_bytes",
    "attachment_bytes",
    "dropped_attachments",
    "refused",
    "acked_total",
    "acked_attachments",
)

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE messages (
    seq          INTEGER PRIMARY KEY,
    message_id   TEXT NOT NULL UNIQUE,
    topic        TEXT NOT NULL,
    created_at   REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_sent_at REAL,
    size         INTEGER NOT NULL,
    payload      BLOB NOT NULL
);
CREATE TABLE attachments (
    seq          INTEGER PRIMARY KEY,
    message_id   TEXT NOT NULL UNIQUE,
    topic        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_sent_at REAL,
    size         INTEGER NOT NULL,
    payload      BLOB NOT NULL
);
"""
# Notes on the schema:
# * ``seq`` is the rowid of both tables, so "in order" and "oldest first" are walks of the primary b-tree.
# * An attachment shares its message's seq and message_id; there is deliberately no foreign key, because an
#   attachment stays after its message is acked until its own ack arrives or the cap drops it.
# * ``size`` duplicates length(payload) so deletions can adjust the byte totals without reading the blobs, and
#   ``payload`` is the last column so scans over the small columns (due(), stats()) need not touch blob overflow
#   pages.
# * The byte totals and counters live in ``meta`` and change in the same transaction as the rows they describe,
#   so they cannot drift and they survive restarts; the totals make the cap check in add() O(1).

# The resend delay for a row sent ``attempts`` times: base * 2**(attempts-1), at most 16x. The shift is clamped
# before shifting because SQLite yields 0 for shifts of 64 or more, which would turn a long outage into a resend
# storm.
_DUE_WHERE = "(last_sent_at IS NULL OR last_sent_at + ? * (1 << min(max(attempts - 1, 0), ?)) <= ?)"


class OutboxError(RuntimeError):
    """The outbox file cannot be used (corrupt, not an outbox, from a newer build, unreadable)."""


class OutboxFull(Exception):
    """A new message was refused because messages alone (attachments already dropped) would exceed the cap."""


class OutboxWriteFailed(OutboxFull):
    """The file system refused a write (disk full, read-only, I/O error): nothing of that call was stored.

    A subclass of :class:`OutboxFull`, so a caller that carries on after a refused message carries on after this too.
    """


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One stored, unacked message."""

    seq: int
    message_id: str
    topic: str
    payload: bytes
    created_at: float
    """Epoch seconds from the outbox's clock when the message was added."""
    attempts: int
    last_sent_at: float | None


@dataclass(frozen=True, slots=True)
class OutboxAttachment:
    """The attachment of a message (an event's snapshot); sent after its message, acked on its own."""

    message_id: str
    topic: str
    payload: bytes
    attempts: int = 0
    last_sent_at: float | None = None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """What health reports about the outbox; the counters are cumulative over the life of the file."""

    depth: int
    """Unacked messages."""
    attachments: int
    """Stored attachments (unacked, not dropped)."""
    bytes: int
    """Stored payload bytes, messages plus attachments (what ``max_bytes`` bounds)."""
    message_bytes: int
    attachment_bytes: int
    max_bytes: int
    oldest_unacked_age_s: float | None
    """Age of the oldest unacked message, from its ``created_at``; None when there is none."""
    dropped_attachments: int
    """Attachments deleted unacked to make room (including new ones that could not fit)."""
    refused: int
    """Messages refused because messages alone filled the cap, or because the file system refused the write."""
    acked_total: int
    """Messages deleted because the hub acked them."""
    acked_attachments: int
    """Attachments deleted because the hub acked them."""
    next_seq: int
    write_error: str | None = None
    """Why the last write failed while writes are failing (the disk is full, ...); None when they work."""


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open; a failed COMMIT may or may not have ended it already."""
    if conn.in_transaction:
        with suppress(sqlite3.Error):  # the error that got us here is the one worth raising
            conn.execute("ROLLBACK")


def _move_aside(path: Path) -> str:
    return (
        f"stop the process, move it aside (mv '{path}' '{path}.bad') and start again: an empty outbox with a new "
        "epoch is created; messages still in the old file were not delivered (keep it)"
    )


def _is_storage_error(exc: sqlite3.DatabaseError) -> bool:
    """A failure of the file or the file system (full, read-only, I/O, corrupt), not a mistake in the SQL."""
    return type(exc) in (sqlite3.OperationalError, sqlite3.DatabaseError)


def _undelivered(conn: sqlite3.Connection) -> str:
    """What a damaged outbox still holds, as far as its messages table can be read (for the refusal message)."""
    try:
        # NOT INDEXED: walk the table itself, so a damaged index does not hide what the rows say.
        count, low, high = conn.execute("SELECT count(*), min(seq), max(seq) FROM messages NOT INDEXED").fetchone()
    except sqlite3.DatabaseError:
        return "the undelivered messages in it could not be counted"
    if not count:
        return "no undelivered messages could be read in it"
    return f"it holds {count} undelivered messages (seq {low}-{high}) as far as it can be read"


class Outbox:
    """A durable queue of (topic, payload) messages with optional attachments, deleted only when acked.

    One instance owns one file; its methods may be called from several threads (they take one lock). Every
    write is one transaction, committed with ``synchronous=FULL`` in WAL mode, so a message that ``add`` returned
    survives a power cut, and a crash never leaves half a message.
    """

    def __init__(self, path: Path, *, max_bytes: int, clock: Callable[[], float] = time.time) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.epoch = ""
        """This file's epoch as 16 hex digits: sequence numbers count within it (see the notes above)."""
        self._write_error: str | None = None
        self._failed_writes = 0
        self._unstored_messages = 0  # refused by a failed write, not yet added to the file's counters
        self._unstored_attachments = 0
        # A file that exists with 0 bytes held an outbox that is gone (truncated); SQLite would quietly take it for
        # a new database, so it is noticed here, before SQLite writes a header into it.
        was_empty = self.path.is_file() and self.path.stat().st_size == 0
        try:
            # isolation_level=None: no implicit transactions; every write below opens its own BEGIN IMMEDIATE so
            # the read of the counters and the write that depends on them cannot interleave with another writer.
            # check_same_thread=False: the camera, publisher and health threads share it under self._lock.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: cannot open ({exc}); check the path and its permissions") from exc
        try:
            self._open(conn, was_empty)
        except OutboxError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise OutboxError(f"outbox {self.path} is unreadable or corrupt ({exc}); {_move_aside(self.path)}") from exc
        self._conn = conn

    def _open(self, conn: sqlite3.Connection, was_empty: bool) -> None:
        self._check_integrity(conn)
        # WAL: readers (health) never block the writer, and a commit is one append + fsync of the WAL.
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(
                f"outbox {self.path}: SQLite refused WAL mode (got {mode!r}); put the outbox on a local file system"
            )
        # FULL: fsync the WAL on every commit; NORMAL could lose the last commits on power loss, and a message
        # add() returned must not vanish.
        conn.execute("PRAGMA synchronous=FULL")
        # The schema has no foreign keys today (attachments may outlive their messages); kept on so any added later
        # are enforced.
        conn.execute("PRAGMA foreign_keys=ON")
        # Truncate the WAL back to this size after checkpoints so a burst does not keep the disk it used.
        conn.execute("PRAGMA journal_size_limit=4194304")
        # Zero what is deleted (acked events name people and carry their snapshots), so a freed page keeps no face.
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute("BEGIN IMMEDIATE")
        try:
            epoch = self._check_or_create(conn, was_empty)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        self.epoch = f"{epoch:016x}"

    def _check_integrity(self, conn: sqlite3.Connection) -> None:
        """Refuse a damaged file at start (SQLite's quick check), saying what in it was not delivered."""
        try:
            problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(5)").fetchall()]
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems == ["ok"]:
            return
        raise OutboxError(
            f"outbox {self.path} is corrupt (quick check: {'; '.join(problems)[:300]}); {_undelivered(conn)}; "
            + _move_aside(self.path)
        )

    @staticmethod
    def _new_epoch() -> int:
        """A random epoch: 63 bits, so it fits SQLite's signed integers, and never 0."""
        return secrets.randbits(63) or 1

    def _check_or_create(self, conn: sqlite3.Connection, was_empty: bool) -> int:
        """Check the schema of an existing outbox or create a new one inside the caller's transaction; the epoch."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        if app_id == 0 and not tables:
            # A new (or empty) file. Schema, header mark and meta rows commit together, so a crash here leaves
            # either nothing or a complete outbox.
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            epoch = self._new_epoch()
            initial = {key: 0 for key in _META_KEYS} | {"schema_version": SCHEMA_VERSION, "next_seq": 1}
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", (initial | {"epoch": epoch}).items())
            if was_empty:
                # Not refused: nothing in a 0-byte file can be recovered, so refusing would only keep the device
                # down until someone deletes it. The new epoch keeps the hub from mistaking the new numbers for
                # the old ones; the hub sees the old epoch end where its delivery stopped.
                log.warning(
                    "outbox %s was 0 bytes: whatever it held is lost (a truncated file?); starting a new epoch "
                    "%016x at seq 1",
                    self.path,
                    epoch,
                )
            return epoch
        if app_id != APPLICATION_ID or not {"meta", "messages", "attachments"} <= tables:
            raise OutboxError(f"{self.path} is an SQLite database but not a rollcall outbox; {_move_aside(self.path)}")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        missing = [key for key in _META_KEYS if key not in meta]
        version = meta.get("schema_version")
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise OutboxError(
                f"outbox {self.path} has schema version {version}, newer than this build's {SCHEMA_VERSION}; "
                "upgrade rollcall, or " + _move_aside(self.path)
            )
        if missing or version != SCHEMA_VERSION:
            raise OutboxError(
                f"outbox {self.path} has a damaged meta table (schema version {version!r}, missing {missing}); "
                + _move_aside(self.path)
            )
        stored = meta.get("epoch")
        if isinstance(stored, int) and stored > 0:
            return stored
        # An outbox made before epochs: it keeps its numbers and gets its epoch now, once.
        assigned = self._new_epoch()
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('epoch', ?)", (assigned,))
        log.info("outbox %s: epoch %016x assigned (made by a build before epochs)", self.path, assigned)
        return assigned

    # --- plumbing ------------------------------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise OutboxError(f"outbox {self.path} is closed")
            yield self._conn

    @contextmanager
    def _write(self, refusing: tuple[int, int] = (0, 0)) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock: committed when the block ends, rolled back if it raises.

        A write the file system refuses raises :class:`OutboxWriteFailed`; ``refusing`` is (messages, attachments)
        that are then lost, counted until a later write can add them to the file's counters.
        """
        with self._read() as conn:
            flushed = (self._unstored_messages, self._unstored_attachments)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    self._bump(conn, "refused", flushed[0])
                    self._bump(conn, "dropped_attachments", flushed[1])
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            except sqlite3.DatabaseError as exc:
                if not _is_storage_error(exc):
                    raise
                self._unstored_messages += refusing[0]
                self._unstored_attachments += refusing[1]
                self._failed_writes += 1
                if self._write_error is None:
                    log.error(
                        "outbox %s cannot be written (%s): new messages are refused and counted, and sends and acks "
                        "are not recorded, until a write works again (free space under %s)",
                        self.path,
                        exc,
                        self.path.parent,
                    )
                self._write_error = f"outbox cannot be written: {exc}"
                raise OutboxWriteFailed(f"outbox {self.path}: {exc}") from exc
            self._unstored_messages -= flushed[0]
            self._unstored_attachments -= flushed[1]
            if self._write_error is not None:
                log.warning(
                    "outbox %s: writing again after %d failed writes; %d messages and %d attachments could not be "
                    "stored meanwhile (counted as refused and dropped)",
                    self.path,
                    self._failed_writes,
                    *flushed,
                )
                self._write_error = None
                self._failed_writes = 0

    @staticmethod
    def _meta(conn: sqlite3.Connection, key: str) -> int:
        value: int = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
        return value

    @staticmethod
    def _bump(conn: sqlite3.Connection, key: str, delta: int) -> None:
        if delta:
            conn.execute("UPDATE meta SET value = value + ? WHERE key = ?", (delta, key))

    @staticmethod
    def _chunks(items: Sequence[object]) -> Iterator[Sequence[object]]:
        for start in range(0, len(items), _ID_CHUNK):
            yield items[start : start + _ID_CHUNK]

    # --- writing -------------------------------------------------------------------------------------------------

    def add(
        self, build: Callable[[int], tuple[str, str, bytes]], attachment: tuple[str, bytes] | None = None
    ) -> OutboxMessage:
        """Store one message (and its optional attachment) durably and return it.

        ``build(seq)`` gets the message's sequence number and returns ``(message_id, topic, payload)``; it runs
        inside the transaction (and the outbox lock), so it must be quick and must not use the outbox. If it raises,
        nothing is stored and the number is not used. ``attachment`` is ``(topic, payload)`` stored under the same
        message_id.

        The cap: attachments go first, oldest first, to make room for the message and then for the new
        attachment; a new attachment that cannot fit even then is dropped (and counted) and the message stored
        without it. When the stored messages plus this one alone exceed ``max_bytes`` the message is refused: its
        sequence number is used up (so the receiver sees the gap where a message was lost), ``refused`` is counted
        and :class:`OutboxFull` is raised. Raises ``ValueError`` if the message_id is already stored, and
        :class:`OutboxWriteFailed` (an OutboxFull) when the file system refuses the write: nothing is stored, no number
        is spent, and the message (and its attachment) count as refused (dropped) from then on.
        """
        refused: OutboxFull | None = None
        with self._write(refusing=(1, 0 if attachment is None else 1)) as conn:
            seq = self._meta(conn, "next_seq")
            message_id, topic, payload = build(seq)
            if not isinstance(payload, bytes) or (attachment is not None and not isinstance(attachment[1], bytes)):
                raise TypeError("outbox payloads must be bytes")
            if conn.execute(
                "SELECT 1 FROM messages WHERE message_id = ? UNION ALL SELECT 1 FROM attachments WHERE message_id = ?",
                (message_id, message_id),
            ).fetchone():
                raise ValueError(f"outbox {self.path}: message_id {message_id!r} is already stored")
            size = len(payload)
            message_bytes = self._meta(conn, "message_bytes")
            # The number is spent whether the message is stored or refused; never reused, even after restarts.
            conn.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
            if message_bytes + size > self.max_bytes:
                self._bump(conn, "refused", 1)
                refused = OutboxFull(
                    f"outbox {self.path} is full: {message_bytes} bytes of unacked messages plus {size} would pass "
                    f"the {self.max_bytes}-byte cap; message {message_id!r} (seq {seq}) refused"
                )
            else:
                now = self._clock()
                conn.execute(
                    "INSERT INTO messages (seq, message_id, topic, created_at, size, payload) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (seq, message_id, topic, now, size, payload),
                )
                self._bump(conn, "message_bytes", size)
                room = self.max_bytes - message_bytes - size  # what attachments may use now
                if attachment is None:
                    self._drop_attachments(conn, room)
                else:
                    att_topic, att_payload = attachment
                    att_size = len(att_payload)
                    if att_size <= room:
                        # Older attachments make room for the newer one: the latest snapshots are the useful ones.
                        self._drop_attachments(conn, room - att_size)
                        conn.execute(
                            "INSERT INTO attachments (seq, message_id, topic, size, payload) VALUES (?, ?, ?, ?, ?)",
                            (seq, message_id, att_topic, att_size, att_payload),
                        )
                        self._bump(conn, "attachment_bytes", att_size)
                    else:
                        self._drop_attachments(conn, room)
                        self._bump(conn, "dropped_attachments", 1)
                stored = OutboxMessage(seq, message_id, topic, payload, now, 0, None)
        # Raised after the commit so the refusal count and the spent number are kept.
        if refused is not None:
            raise refused
        return stored

    def _drop_attachments(self, conn: sqlite3.Connection, room: int) -> None:
        """Delete the oldest attachments until they use at most ``room`` bytes (inside the caller's transaction)."""
        excess = self._meta(conn, "attachment_bytes") - max(room, 0)
        if excess <= 0:
            return
        freed = dropped = 0
        last_seq = None
        oldest_first = conn.execute("SELECT seq, size FROM attachments ORDER BY seq")
        for seq, size in oldest_first:
            freed += size
            dropped += 1
            last_seq = seq
            if freed >= excess:
                break
        oldest_first.close()  # finish the read before deleting from the same table
        if last_seq is None:
            return
        conn.execute("DELETE FROM attachments WHERE seq <= ?", (last_seq,))
        self._bump(conn, "attachment_bytes", -freed)
        self._bump(conn, "dropped_attachments", dropped)

    def mark_sent(self, seqs: Sequence[int], now: float | None = None) -> int:
        """Record that these messages were published (one more attempt); returns how many rows that touched."""
        return self._mark("messages", "seq", seqs, now)

    def mark_attachments_sent(self, message_ids: Sequence[str], now: float | None = None) -> int:
        """Record that these attachments were published (one more attempt); returns how many rows that touched."""
        return self._mark("attachments", "message_id", message_ids, now)

    def _mark(self, table: str, key: str, ids: Sequence[object], now: float | None) -> int:
        if not ids:
            return 0
        when = self._clock() if now is None else now
        touched = 0
        with self._write() as conn:
            for chunk in self._chunks(list(dict.fromkeys(ids))):  # dict.fromkeys: a repeated id is one attempt
                marks = ",".join("?" * len(chunk))
                cursor = conn.execute(
                    f"UPDATE {table} SET attempts = attempts + 1, last_sent_at = ? WHERE {key} IN ({marks})",
                    (when, *chunk),
                )
                touched += cursor.rowcount
        return touched

    def record_sends(
        self, messages: Mapping[int, tuple[int, float]], attachments: Mapping[str, tuple[int, float]]
    ) -> int:
        """Record sends that could not be recorded when they happened (the disk was full) in one transaction.

        ``messages`` maps a seq, and ``attachments`` a message_id, to (how many sends, when the last one was);
        the attempts grow by that many, so the backoff continues as if each send had been recorded. Returns how
        many rows that touched (acked ones are gone and ignored).
        """
        touched = 0
        with self._write() as conn:
            for table, key, sends in (("messages", "seq", messages), ("attachments", "message_id", attachments)):
                for row_key, (count, last) in sends.items():
                    touched += conn.execute(
                        f"UPDATE {table} SET attempts = attempts + ?, "
                        f"last_sent_at = max(coalesce(last_sent_at, ?), ?) WHERE {key} = ?",
                        (count, last, last, row_key),
                    ).rowcount
        return touched

    def ack(self, message_ids: Sequence[str], attachment_ids: Sequence[str] = ()) -> int:
        """Delete the messages and attachments the hub's ack names; returns how many rows were deleted.

        Unknown or already-deleted ids are ignored, so a repeated ack is harmless. An attachment whose message is
        acked stays until its own id is acked (or the cap drops it).
        """
        deleted = 0
        with self._write() as conn:
            for table, counter, bytes_key, ids in (
                ("messages", "acked_total", "message_bytes", message_ids),
                ("attachments", "acked_attachments", "attachment_bytes", attachment_ids),
            ):
                for chunk in self._chunks(list(dict.fromkeys(ids))):
                    marks = ",".join("?" * len(chunk))
                    count, size = conn.execute(
                        f"SELECT count(*), coalesce(sum(size), 0) FROM {table} WHERE message_id IN ({marks})", chunk
                    ).fetchone()
                    if count:
                        conn.execute(f"DELETE FROM {table} WHERE message_id IN ({marks})", chunk)
                        self._bump(conn, counter, count)
                        self._bump(conn, bytes_key, -size)
                        deleted += count
        return deleted

    # --- reading -------------------------------------------------------------------------------------------------

    def due(self, limit: int, resend_after_s: float, now: float | None = None) -> list[OutboxMessage]:
        """Unacked messages to publish now, in seq order: never sent, or last sent longer ago than their backoff.

        The backoff after ``n`` attempts is ``resend_after_s * 2**(n-1)``, at most 16 times ``resend_after_s``.
        """
        when = self._clock() if now is None else now
        with self._read() as conn:
            rows = conn.execute(
                "SELECT seq, message_id, topic, payload, created_at, attempts, last_sent_at FROM messages "
                f"WHERE {_DUE_WHERE} ORDER BY seq LIMIT ?",
                (resend_after_s, MAX_BACKOFF_SHIFT, when, limit),
            ).fetchall()
        return [OutboxMessage(*row) for row in rows]

    def due_attachments(self, limit: int, resend_after_s: float, now: float | None = None) -> list[OutboxAttachment]:
        """Attachments to publish now, in seq order, with the same backoff as :meth:`due`.

        An attachment is due only once its message has been sent at least once (or acked), so the receiver gets
        the event before its snapshot.
        """
        when = self._clock() if now is None else now
        with self._read() as conn:
            rows = conn.execute(
                "SELECT a.message_id, a.topic, a.payload, a.attempts, a.last_sent_at FROM attachments AS a "
                "WHERE NOT EXISTS (SELECT 1 FROM messages AS m WHERE m.seq = a.seq AND m.attempts = 0) "
                f"AND {_DUE_WHERE} "  # its bare column names resolve to the outer table, attachments
                "ORDER BY a.seq LIMIT ?",
                (resend_after_s, MAX_BACKOFF_SHIFT, when, limit),
            ).fetchall()
        return [OutboxAttachment(*row) for row in rows]

    def attachment(self, message_id: str) -> OutboxAttachment | None:
        """The stored attachment of ``message_id``, or None (never added, acked or dropped)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT message_id, topic, payload, attempts, last_sent_at FROM attachments WHERE message_id = ?",
                (message_id,),
            ).fetchone()
        return None if row is None else OutboxAttachment(*row)

    def stats(self, now: float | None = None) -> OutboxStats:
        """Depth, bytes, the age of the oldest unacked message and the cumulative drop/refuse/ack counters."""
        when = self._clock() if now is None else now
        with self._read() as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            depth = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            attachments = conn.execute("SELECT count(*) FROM attachments").fetchone()[0]
            # The lowest seq is the oldest message; its created_at is one primary-key lookup away.
            oldest = conn.execute("SELECT created_at FROM messages ORDER BY seq LIMIT 1").fetchone()
        return OutboxStats(
            depth=depth,
            attachments=attachments,
            bytes=meta["message_bytes"] + meta["attachment_bytes"],
            message_bytes=meta["message_bytes"],
            attachment_bytes=meta["attachment_bytes"],
            max_bytes=self.max_bytes,
            # Clamped: a clock stepped backwards must not report a negative age (health refuses those).
            oldest_unacked_age_s=None if oldest is None else max(0.0, when - oldest[0]),
            dropped_attachments=meta["dropped_attachments"] + self._unstored_attachments,
            refused=meta["refused"] + self._unstored_messages,
            acked_total=meta["acked_total"],
            acked_attachments=meta["acked_attachments"],
            next_seq=meta["next_seq"],
            write_error=self._write_error,
        )

    def integrity_check(self) -> str:
        """Run SQLite's full integrity check; returns ``'ok'`` when the file is sound, else the problems found."""
        with self._read() as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(row[0]) for row in rows)

    def forget_delivered(self) -> bool:
        """Checkpoint the WAL into the file and truncate it, so no copy of a deleted (acked) row is left in either.

        With ``secure_delete`` the file's freed pages are zeroed; the WAL keeps older versions of pages until it is
        reset, so this is what the door runs when people leave its gallery (an erasure). True when the checkpoint
        completed (a reader can hold it back; the next call tries again).
        """
        with self._read() as conn:
            try:
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.OperationalError as exc:
                log.warning("outbox %s: could not checkpoint the WAL (%s)", self.path, exc)
                return False
        return bool(busy == 0)

    # --- lifetime ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Checkpoint the WAL into the main file (truncating it) and close; calling it again does nothing."""
        with self._lock:
            if self._conn is None:
                return
            conn, self._conn = self._conn, None
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError as exc:
                # A full disk cannot take the checkpoint; the WAL keeps every commit and the next start replays it.
                log.warning("outbox %s: closed without a checkpoint (%s); the WAL keeps everything", self.path, exc)
            finally:
                conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
