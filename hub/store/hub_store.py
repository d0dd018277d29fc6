"""The hub's store as one object: every part of :mod:`hub.store` on one database, picture folder and key file."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import TracebackType

from cryptography.fernet import MultiFernet

from hub.config import HubSettings
from hub.store.agents import AgentStore
from hub.store.attendance import AttendanceStore
from hub.store.devices import DeviceStore
from hub.store.erasure import BackupRegister, ErasureLedger, still_named
from hub.store.errors import StoreError
from hub.store.events import EventStore
from hub.store.people import ErasureReport, PeopleStore
from hub.store.pictures import PictureStore
from hub.store.schema import open_database

log = logging.getLogger("rollcall.hub.store")


class HubStore(PeopleStore, EventStore, PictureStore, DeviceStore, AgentStore, AttendanceStore):
    """The hub's data: one SQLite database, encrypted picture files under ``data_dir``, the Fernet key file.

    Not thread-safe: the hub's single writer thread owns it (other readers open their own connection with
    :func:`open_database`). Every ``now`` is an aware datetime the caller passes; the store never reads the clock.
    """

    def __init__(self, database: Path, data_dir: Path, key_file: Path, *, quick_check: bool = True) -> None:
        """Open (creating and migrating) the database; create the key file (0600) if there is no encrypted data yet.

        ``quick_check`` reads the whole file for damage first (see :func:`open_database`); a second store the hub
        opens while it runs (it checked the file at start) may leave it off.
        """
        self.path = Path(database)
        self.data_dir = Path(data_dir)
        self.key_file = Path(key_file)
        self._fernet: MultiFernet | None = None
        self._key_signature: tuple[int, int, int] | None = None
        self.db = open_database(self.path, quick_check=quick_check)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._check_key()
        except BaseException:
            self.db.close()
            raise

    @classmethod
    def from_settings(cls, settings: HubSettings, *, quick_check: bool = True) -> HubStore:
        """The store at the paths of the hub's configuration."""
        return cls(settings.database, settings.data_dir, settings.key_file, quick_check=quick_check)

    scrubs_backups: bool = True
    """False for a store opened on one of the backups (it must not scrub the backups in turn)."""

    def erase_person(self, person_id: str, now: datetime, *, actor: str = "hub") -> ErasureReport:
        """:meth:`PeopleStore.erase_person`, then the same in every backup the hub made (``backups.list``)."""
        report = super().erase_person(person_id, now, actor=actor)
        if not self.scrubs_backups:
            return report
        done, failed = self.erase_in_backups([person_id], now, actor=actor)
        return replace(report, backups=done, backups_failed=tuple(failed))

    def erase_in_backups(
        self, person_ids: list[str], now: datetime, *, actor: str = "hub", backups: list[Path] | None = None
    ) -> tuple[int, list[str]]:
        """Erase the people from the registered backups (or ``backups``) that still name them.

        Returns (backups changed, "path: why" for each that could not be). A backup is changed in place: the same
        erasure as in the live database, VACUUMed, left as a single file (no WAL) with its mode kept.
        """
        done = 0
        failed: list[str] = []
        for path in BackupRegister(self.data_dir).paths() if backups is None else backups:
            try:
                if erase_from_backup(path, self.data_dir, self.key_file, person_ids, now, actor=actor):
                    done += 1
            except (StoreError, OSError, sqlite3.Error) as exc:
                log.error("could not erase %s from backup %s: %s", ", ".join(person_ids), path, exc)
                failed.append(f"{path}: {exc}")
        return done, failed

    def reapply_erasures(self, now: datetime) -> list[str]:
        """Erase again everyone in the erasure ledger that this database still names (it was restored from a backup).

        Returns the ids erased again; the hub runs it at start.
        """
        again = still_named(self.path, ErasureLedger(self.data_dir).person_ids())
        for person_id in again:
            log.warning("erasing %s again: the ledger says they were erased (the database was restored?)", person_id)
            self.erase_person(person_id, now, actor="erasure-ledger")
        return again

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    def __enter__(self) -> HubStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def erase_from_backup(
    backup: Path, data_dir: Path, key_file: Path, person_ids: list[str], now: datetime, *, actor: str = "hub"
) -> list[str]:
    """Erase those of ``person_ids`` that the backup file still names, in place; returns them.

    The backup is opened as a store (with the hub's key, to read its dead letters), erased like the live database,
    VACUUMed and left as one file again (journal mode DELETE).
    """
    named = still_named(backup, person_ids)
    if named:
        with HubStore(backup, data_dir, key_file, quick_check=False) as copy:
            copy.scrubs_backups = False
            for person_id in named:
                copy.erase_person(person_id, now, actor=actor)
            copy.db.conn.execute("PRAGMA journal_mode = DELETE")
    return named
