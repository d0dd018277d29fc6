"""Retention: what the hub keeps how long, when the daily purge runs (site-local time), and the purge itself.

Every kind of stored data has a default (``[retention]`` in the hub's config). The purge runs once a day at
``retention.run_at`` in the site's time zone (not every 24 hours from start-up): :func:`due` says whether a run is
owed at ``now`` given the last run, and :func:`purge` deletes (or, with ``dry_run``, only counts) what is older than
each kind's cut-off. Times are passed in; nothing here reads the clock.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from hub.config import RetentionSettings
from hub.store import HubStore
from hub.store.core import id_chunks, stored_time
from hub.store.schema import transaction

KINDS: tuple[str, ...] = (
    "events",
    "snapshots",
    "attendance_photos",
    "activity",
    "file_changes",
    "dead_letters",
    "audit",
)
"""The kinds of data the purge removes, in the order it reports them."""


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """For each kind, the time before which its rows go."""

    by_kind: dict[str, datetime]

    @classmethod
    def at(cls, now: datetime, settings: RetentionSettings) -> Cutoffs:
        """The cut-offs of a purge at ``now``."""
        days = {
            "events": settings.events_days,
            "snapshots": settings.snapshots_days,
            "attendance_photos": settings.attendance_photos_days,
            "activity": settings.activity_days,
            "file_changes": settings.file_changes_days,
            "dead_letters": settings.dead_letters_days,
            "audit": settings.audit_days,
        }
        return cls({kind: now - timedelta(days=days[kind]) for kind in KINDS})


def _run_at(settings: RetentionSettings) -> time:
    hours, minutes = settings.run_at.split(":")
    return time(int(hours), int(minutes))


def last_slot(now: datetime, settings: RetentionSettings, zone: ZoneInfo) -> datetime:
    """The latest moment at or before ``now`` when the site's clock showed ``run_at`` (aware, in the site's zone).

    On a day the clocks skip ``run_at`` (spring forward) the slot is the first moment after the gap.
    """
    local = now.astimezone(zone)
    slot = datetime.combine(local.date(), _run_at(settings), zone)
    slot = slot.astimezone(zone)  # normalises a time in a DST gap forward
    if slot > local:
        previous = datetime.combine(local.date() - timedelta(days=1), _run_at(settings), zone)
        slot = previous.astimezone(zone)
    return slot


def due(last_run: datetime | None, now: datetime, settings: RetentionSettings, zone: ZoneInfo) -> bool:
    """Whether a purge is owed: the site's clock has passed ``run_at`` since ``last_run`` (never run: yes)."""
    return last_run is None or last_run < last_slot(now, settings, zone)


_COUNTS = {
    "events": "SELECT count(*) FROM events WHERE at < ?",
    "activity": "SELECT count(*) FROM agent_activity WHERE at < ?",
    "file_changes": "SELECT count(*) FROM file_changes WHERE at < ?",
    "dead_letters": "SELECT count(*) FROM dead_letters WHERE received_at < ?",
    "audit": "SELECT count(*) FROM audit WHERE at < ? AND action != 'person.erase'",
}
_DELETES = {
    "activity": "DELETE FROM agent_activity WHERE at < ?",
    "file_changes": "DELETE FROM file_changes WHERE at < ?",
    "dead_letters": "DELETE FROM dead_letters WHERE received_at < ?",
    # That an erasure happened (and by whom) is kept: it is the proof the erasure was done, and names nobody.
    "audit": "DELETE FROM audit WHERE at < ? AND action != 'person.erase'",
}

_PHOTO_EVENTS = (
    "SELECT first_in_event FROM attendance WHERE first_in_event IS NOT NULL "
    "UNION SELECT last_out_event FROM attendance WHERE last_out_event IS NOT NULL"
)


def _doomed_pictures(conn: sqlite3.Connection, cut: Cutoffs) -> dict[str, list[tuple[str, str]]]:
    """(event id, file) of the snapshots to go: attendance photos and other snapshots, each by its own cut-off."""
    events_cut = stored_time(cut.by_kind["events"])
    rows = conn.execute(
        f"SELECT s.event_id, s.file, e.at, s.event_id IN ({_PHOTO_EVENTS}) FROM snapshots s "
        "JOIN events e ON e.event_id = s.event_id"
    ).fetchall()
    doomed: dict[str, list[tuple[str, str]]] = {"snapshots": [], "attendance_photos": []}
    for event_id, file, at, is_photo in rows:
        kind = "attendance_photos" if is_photo else "snapshots"
        if at < stored_time(cut.by_kind[kind]) or at < events_cut:
            doomed[kind].append((event_id, file))
    return doomed


def purge(store: HubStore, cut: Cutoffs, *, dry_run: bool = False) -> dict[str, int]:
    """Delete (or only count, ``dry_run``) what is older than the cut-offs; returns rows per kind.

    A snapshot goes with its event at the latest; snapshot captures count as snapshots. Freed pages are zeroed
    (``secure_delete``); the WAL is checkpointed and truncated afterwards.
    """
    conn = store.db.conn
    stamps = {kind: stored_time(value) for kind, value in cut.by_kind.items()}
    doomed = _doomed_pictures(conn, cut)
    captures = conn.execute(
        "SELECT capture_id, file FROM captures WHERE purpose = 'snapshot' AND at < ?", (stamps["snapshots"],)
    ).fetchall()
    counts = {kind: int(conn.execute(sql, (stamps[kind],)).fetchone()[0]) for kind, sql in _COUNTS.items()}
    counts["snapshots"] = len(doomed["snapshots"]) + len(captures)
    counts["attendance_photos"] = len(doomed["attendance_photos"])
    if dry_run:
        return {kind: counts[kind] for kind in KINDS}
    pictures = doomed["snapshots"] + doomed["attendance_photos"]
    with transaction(store.db) as tx:
        for ids in id_chunks([event_id for event_id, _ in pictures]):
            marks = ", ".join("?" * len(ids))
            tx.execute(f"DELETE FROM snapshots WHERE event_id IN ({marks})", ids)
            tx.execute(f"UPDATE events SET snapshot_file = NULL WHERE event_id IN ({marks})", ids)
        tx.executemany("DELETE FROM captures WHERE capture_id = ?", [(cid,) for cid, _ in captures])
        tx.execute("DELETE FROM events WHERE at < ?", (stamps["events"],))
        for kind, sql in _DELETES.items():
            tx.execute(sql, (stamps[kind],))
    store._unlink([file for _, file in pictures] + [file for _, file in captures])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {kind: counts[kind] for kind in KINDS}
