"""``rollcall hub backup DEST``: a consistent copy of the hub's database made with SQLite's online backup API.

The hub may keep writing meanwhile. The copy is read from one snapshot (a read transaction held on the source for
the whole copy; in WAL mode it blocks no writer), written to a temporary file next to DEST, checked with
``PRAGMA quick_check``, flushed to disk (file and folder) and only then renamed to DEST, so DEST is either the old
file or a complete, checked copy. The key file is not part of it: back it up once, apart (docs/hub.md).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PAGES_PER_STEP = 1024
"""Pages copied per step: progress is reported between steps."""


class BackupError(Exception):
    """The backup could not be made; the message says why and what to do."""


@dataclass(frozen=True)
class BackupReport:
    """What was written: the file, its size, and the pages copied."""

    path: Path
    bytes: int
    pages: int


Progress = Callable[[int, int], None]
"""Called with (pages copied, pages in all) between steps."""


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_database(
    database: Path, dest: Path, *, force: bool = False, progress: Progress | None = None
) -> BackupReport:
    """Copy ``database`` to ``dest`` (refusing an existing ``dest`` unless ``force``); see the module text."""
    if not database.is_file():
        raise BackupError(f"no hub database at {database} (hub.database in the config)")
    if dest.is_dir():
        raise BackupError(f"{dest} is a folder; name the backup file, e.g. {dest / 'rollcall.db'}")
    if dest.exists() and not force:
        raise BackupError(f"{dest} exists already; choose a new name or pass --force to replace it")
    if not dest.parent.is_dir():
        raise BackupError(f"no folder {dest.parent} to write the backup in; create it first")
    if dest.resolve() == database.resolve():
        raise BackupError("the backup must not be the database itself")
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    partial.unlink(missing_ok=True)
    try:
        source = sqlite3.connect(database, timeout=30, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {database}: {exc}") from None
    try:
        target = sqlite3.connect(partial, isolation_level=None)
        try:
            # One snapshot for the whole copy: the hub's later commits go to the WAL and do not restart the backup.
            source.execute("BEGIN")
            source.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            copied = [0, 0]

            def step(status: int, remaining: int, total: int) -> None:
                copied[:] = [total - remaining, total]
                if progress is not None:
                    progress(total - remaining, total)

            source.backup(target, pages=PAGES_PER_STEP, progress=step)
            source.execute("COMMIT")
            target.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
            verdict = target.execute("PRAGMA quick_check").fetchall()
        finally:
            target.close()
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"the backup of {database} failed: {exc}") from None
    finally:
        source.close()
    if verdict != [("ok",)]:
        partial.unlink(missing_ok=True)
        problems = "; ".join(str(row[0]) for row in verdict[:5])
        raise BackupError(f"the copy failed its quick_check ({problems}); the database may be damaged, nothing written")
    partial.chmod(0o600)  # personal data, like the database itself
    _fsync(partial)
    os.replace(partial, dest)
    _fsync(dest.parent)
    return BackupReport(dest, dest.stat().st_size, copied[1])
