"""Changes in watched folders (watchdog), filtered by include/exclude patterns and batched for activity messages."""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from edge.protocol import wire

log = logging.getLogger("rollcall.agent.files")

Change = Literal["created", "modified", "deleted", "moved"]
_KINDS: dict[str, Change] = {"created": "created", "modified": "modified", "deleted": "deleted", "moved": "moved"}
MAX_PENDING = 10_000
"""Changes kept between two activity batches; beyond this new ones are counted as dropped (a runaway build)."""


def _suffixes(relative: str) -> list[str]:
    parts = relative.split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


def matches(relative: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a path (relative to its watched folder, '/'-separated) is logged.

    A pattern matches the relative path or any tail of it that starts at a folder boundary, so ``.git/*`` also
    excludes ``project/.git/config`` and ``*.tmp`` excludes ``a/b.tmp`` (``*`` crosses '/'). Included when some
    include pattern matches and no exclude pattern does.
    """
    tails = _suffixes(relative)
    if not any(fnmatch.fnmatchcase(tail, pattern) for pattern in include for tail in tails):
        return False
    return not any(fnmatch.fnmatchcase(tail, pattern) for pattern in exclude for tail in tails)


class FileBatch:
    """Thread-safe pending changes, deduplicated within a batch; :meth:`take` empties it."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str, str | None], wire.FileChange] = {}
        self.dropped = 0

    def add(self, change: wire.FileChange) -> None:
        """Keep a change (the first of identical ones in this batch)."""
        key = (change.path, change.change, change.dest_path)
        with self._lock:
            if key in self._items:
                return
            if len(self._items) >= self.max_pending:
                self.dropped += 1
                return
            self._items[key] = change

    def take(self) -> list[wire.FileChange]:
        """Every pending change in arrival order; the batch is empty afterwards."""
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
            return items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: FileWatcher, root: Path) -> None:
        self.watcher = watcher
        self.root = root

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.watcher.handle(self.root, event)


class FileWatcher:
    """A watchdog observer on each configured folder; matching changes go into ``batch``."""

    def __init__(
        self,
        folders: Sequence[Path],
        include: Sequence[str],
        exclude: Sequence[str],
        clock: Callable[[], datetime] = wire.now_utc,
    ) -> None:
        self.folders = [Path(folder).expanduser().resolve() for folder in folders]
        self.include = list(include)
        self.exclude = list(exclude)
        self.batch = FileBatch()
        self._clock = clock
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self.problems: list[str] = []

    def _relative(self, root: Path, path: str) -> str | None:
        try:
            return Path(path).resolve().relative_to(root).as_posix()
        except ValueError:
            return None

    def handle(self, root: Path, event: FileSystemEvent) -> None:
        """Turn one watchdog event into a FileChange if it is a file change the patterns let through."""
        change = _KINDS.get(event.event_type)
        if change is None or event.is_directory:
            return  # opened/closed events, and folders themselves
        src = event.src_path.decode() if isinstance(event.src_path, bytes) else str(event.src_path)
        dest_raw = event.dest_path if change == "moved" else ""
        dest = dest_raw.decode() if isinstance(dest_raw, bytes) else str(dest_raw)
        relative = self._relative(root, src)
        dest_relative = self._relative(root, dest) if dest else None
        wanted = (relative is not None and matches(relative, self.include, self.exclude)) or (
            dest_relative is not None and matches(dest_relative, self.include, self.exclude)
        )
        if not wanted:
            return
        self.batch.add(
            wire.FileChange(path=src[:4096], change=change, at=self._clock(), dest_path=dest[:4096] if dest else None)
        )

    def start(self) -> None:
        """Start watching; a folder that does not exist is reported and skipped."""
        observer = Observer()
        observer.name = "agent-files"
        watched = 0
        for folder in self.folders:
            if not folder.is_dir():
                problem = f"watched folder {folder} does not exist; not watching it"
                self.problems.append(problem)
                log.warning("%s", problem)
                continue
            observer.schedule(_Handler(self, folder), str(folder), recursive=True)
            watched += 1
        observer.daemon = True
        observer.start()
        self._observer = observer
        log.info("watching %d folder(s) for file changes", watched)

    def stop(self) -> None:
        """Stop watching."""
        observer = self._observer
        if observer is not None:
            observer.stop()
            observer.join(5)
            self._observer = None
