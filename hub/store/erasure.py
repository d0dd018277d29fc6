"""Erasure beyond the live database: the ledger of erased ids a restore re-applies, and the backups the hub scrubs.

Two files in the hub's ``data_dir`` (next to the database, outside it, so restoring the database file keeps them):

* ``erasures.log``: one line per erased person, ``<person id> <UTC time>``, no name and no face, fsynced before the
  erasure commits. A database restored from any backup (one the hub knew of or a copy made elsewhere) is brought
  back into line at the next start: every id in the ledger that the database still knows by name is erased again.
* ``backups.list``: the absolute paths of the backups ``rollcall hub backup`` wrote, one a line. An erasure erases the
  person in each of them that still exists (the same clean-up as in the live database, then VACUUM), so the hub's
  own backups hold neither name nor face afterwards; paths that no longer exist are dropped from the list.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from hub.store.core import stored_time

log = logging.getLogger("rollcall.hub.erasure")

LEDGER_NAME: Final = "erasures.log"
BACKUPS_NAME: Final = "backups.list"


def _append_line(path: Path, line: str) -> None:
    """Append one line and fsync it (created 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


@dataclass(frozen=True, slots=True)
class ErasureLedger:
    """``data_dir/erasures.log``: the ids of everyone erased (see the module text)."""

    data_dir: Path

    @property
    def path(self) -> Path:
        """The ledger file."""
        return self.data_dir / LEDGER_NAME

    def person_ids(self) -> list[str]:
        """Every erased id, in the order they were erased, once each."""
        return list(dict.fromkeys(line.split()[0] for line in _read_lines(self.path)))

    def record(self, person_id: str, now: datetime) -> None:
        """Add an id (durably) unless it is there already."""
        if person_id in self.person_ids():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _append_line(self.path, f"{person_id} {stored_time(now)}")


@dataclass(frozen=True, slots=True)
class BackupRegister:
    """``data_dir/backups.list``: the backups the hub made (see the module text)."""

    data_dir: Path

    @property
    def path(self) -> Path:
        """The list file."""
        return self.data_dir / BACKUPS_NAME

    def paths(self) -> list[Path]:
        """The registered backups that still exist (the list is rewritten without the others)."""
        listed = [Path(line) for line in dict.fromkeys(_read_lines(self.path))]
        present = [path for path in listed if path.is_file()]
        if len(present) != len(listed):
            partial = self.path.with_name(f".{BACKUPS_NAME}.{os.getpid()}")
            partial.write_text("".join(f"{path}\n" for path in present))
            partial.chmod(0o600)
            os.replace(partial, self.path)
        return present

    def add(self, backup: Path) -> None:
        """Register a backup file (its absolute path)."""
        backup = backup.resolve()
        if backup in self.paths():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _append_line(self.path, str(backup))


def still_named(database: Path, person_ids: Iterable[str]) -> list[str]:
    """Which of ``person_ids`` the database at ``database`` still holds by name (not yet erased there)."""
    wanted = list(dict.fromkeys(person_ids))
    if not wanted:
        return []
    conn = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        found = []
        for person_id in wanted:
            row = conn.execute(
                "SELECT 1 FROM people WHERE id = ? AND (name IS NOT NULL OR erased_at IS NULL)", (person_id,)
            ).fetchone()
            if row is not None:
                found.append(person_id)
        return found
    finally:
        conn.close()
