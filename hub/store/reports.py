"""The report queries behind ``rollcall report``: read-only SQL on the hub's database, without the hub running."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path
from typing import Any


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the hub database at ``path`` whose rows read by column name."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    return connection


def attendance_rows(connection: sqlite3.Connection, start: date, end: date) -> list[dict[str, Any]]:
    """Everyone's attendance from ``start`` to ``end`` (inclusive), by day then name."""
    cursor = connection.cursor()
    cursor.row_factory = None  # plain tuples zipped with the names: a month of 10,000 people is 300,000 rows
    cursor.execute(
        "SELECT a.day, a.person_id, p.name, a.first_in, a.last_out, ROUND(a.present_s / 3600.0, 2) AS hours, "
        "a.status, a.final, a.first_in_event, a.last_out_event "
        "FROM attendance a JOIN people p ON p.id = a.person_id WHERE a.day BETWEEN ? AND ? ORDER BY a.day, p.name",
        (start.isoformat(), end.isoformat()),
    )
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def recent_event_rows(connection: sqlite3.Connection, last: int) -> list[dict[str, Any]]:
    """The ``last`` newest events, newest first, with the names of the people they name."""
    return [
        dict(row)
        for row in connection.execute(
            "SELECT e.at, e.device, e.seq, e.type, e.person_id, p.name, ROUND(e.score, 3) AS score, e.has_snapshot "
            "FROM events e LEFT JOIN people p ON p.id = e.person_id ORDER BY e.at DESC LIMIT ?",
            (last,),
        )
    ]


def people_matching(connection: sqlite3.Connection, person: str) -> list[sqlite3.Row]:
    """(id, name) of the people, erased ones left out, whose id or exact name is ``person``."""
    return connection.execute(
        "SELECT id, name FROM people WHERE (id = ? OR name = ?) AND erased_at IS NULL", (person, person)
    ).fetchall()


def person_presence(connection: sqlite3.Connection, person_id: str) -> sqlite3.Row | None:
    """(state, since, door) of one person as stored; None when never seen."""
    row: sqlite3.Row | None = connection.execute(
        "SELECT state, since, door FROM presence WHERE person_id = ?", (person_id,)
    ).fetchone()
    return row


def person_days(connection: sqlite3.Connection, person_id: str, since: date) -> list[sqlite3.Row]:
    """(day, first_in, last_out, hours, status) of one person from ``since`` on, newest first."""
    return connection.execute(
        "SELECT day, first_in, last_out, ROUND(present_s / 3600.0, 2) AS hours, status FROM attendance "
        "WHERE person_id = ? AND day >= ? ORDER BY day DESC",
        (person_id, since.isoformat()),
    ).fetchall()
