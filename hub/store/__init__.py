"""The hub's SQLite store: versioned schema, people and encrypted face templates, events, pictures, erasure, reports.

:class:`HubStore` is assembled from one class per part (people, events, pictures, devices, agents, attendance,
audit and dead letters, keys); the report queries that read a database without the hub are in
:mod:`hub.store.reports`.
"""

from hub.store.attendance import AttendanceRow, PresenceRow
from hub.store.devices import Device
from hub.store.errors import NotFound, StoreError
from hub.store.events import ReceivedEvent
from hub.store.hub_store import HubStore
from hub.store.journal import MAX_DEAD_LETTER_BYTES, DeadLetter, DeadLetterLimits, DeadLetterNote
from hub.store.people import MAX_NAME_CHARS, ErasureReport, Person
from hub.store.pictures import CaptureOutcome, SnapshotOutcome
from hub.store.schema import APPLICATION_ID, BUSY_TIMEOUT_MS, MIGRATIONS, Migration, migrate, open_database

__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT_MS",
    "MAX_DEAD_LETTER_BYTES",
    "MAX_NAME_CHARS",
    "MIGRATIONS",
    "AttendanceRow",
    "CaptureOutcome",
    "DeadLetter",
    "DeadLetterLimits",
    "DeadLetterNote",
    "Device",
    "ErasureReport",
    "HubStore",
    "Migration",
    "NotFound",
    "Person",
    "PresenceRow",
    "ReceivedEvent",
    "SnapshotOutcome",
    "StoreError",
    "migrate",
    "open_database",
]
