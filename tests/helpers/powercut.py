"""Power loss at the storage layer: the ``powercut.so`` shim's log turned back into the files a disk could hold.

A process started with :func:`preload_env` logs every write and truncate of the files under one folder, and every
fsync/fdatasync (see ``powercut.c``). After a SIGKILL, :func:`apply_power_cut` undoes every write that no later fsync
of its file covered, newest first, then replays a random subset of them in their order: the disk may have kept some
of the unsynced writes, and SQLite must cope with any such subset. The shim is compiled with gcc at test time
(:func:`build_shim`), so there is no binary in the repository.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("powercut.c")
_HEADER = struct.Struct("<IIIIQQQQ")
_MAGIC = 0x31524350
_WRITE, _TRUNCATE, _SYNC = 1, 2, 3


class ShimUnavailable(RuntimeError):
    """The shim cannot be built here (no C compiler); the message says what to install."""


def build_shim(folder: Path) -> Path:
    """Compile ``powercut.c`` into ``folder/powercut.so`` (once per folder) and return its path."""
    target = folder / "powercut.so"
    if target.exists() and target.stat().st_mtime >= SOURCE.stat().st_mtime:
        return target
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise ShimUnavailable("the power-loss shim needs a C compiler: apt-get install gcc libc6-dev (.ci/run does)")
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"powercut.{os.getpid()}.so"
    result = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(partial), str(SOURCE), "-ldl", "-lpthread"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ShimUnavailable(f"compiling {SOURCE.name} failed:\n{result.stderr}")
    partial.replace(target)
    return target


def preload_env(shim: Path, folder: Path, log: Path) -> dict[str, str]:
    """Environment entries that make a child process log its writes under ``folder`` to ``log``."""
    return {"LD_PRELOAD": str(shim), "POWERCUT_DIR": str(folder.resolve()), "POWERCUT_LOG": str(log)}


@dataclass(frozen=True)
class _Record:
    index: int
    kind: int
    path: str
    offset: int
    """write: where; truncate: the new length; sync: how many records the fsync covers."""
    old_size: int
    old: bytes
    new: bytes


def _records(log: Path) -> Iterator[_Record]:
    data = log.read_bytes() if log.exists() else b""
    position = index = 0
    while position + _HEADER.size <= len(data):
        magic, kind, path_len, _, offset, new_len, old_size, old_len = _HEADER.unpack_from(data, position)
        end = position + _HEADER.size + path_len + old_len + new_len
        if magic != _MAGIC or end > len(data):
            return  # a record cut short by the kill: its write never happened (it is logged first)
        body = position + _HEADER.size
        path = data[body : body + path_len].decode()
        old = data[body + path_len : body + path_len + old_len]
        new = data[body + path_len + old_len : end]
        yield _Record(index, kind, path, offset, old_size, old, new)
        position, index = end, index + 1


@dataclass(frozen=True)
class CutReport:
    """What one simulated power cut did to the files."""

    unsynced_writes: int
    dropped_writes: int
    files: int


def apply_power_cut(log: Path, rng: random.Random, keep_share: float = 0.0) -> CutReport:
    """Turn the files the log names into what a disk could hold after a cut at the moment of the SIGKILL.

    Every write or truncate after its file's last fsync is undone, newest first; then each of them is replayed, in
    order, with probability ``keep_share`` (0: all of them are lost). The log is removed afterwards, so the next run
    of the process starts a fresh one.
    """
    records = list(_records(log))
    synced_upto: dict[str, int] = {}
    for record in records:
        if record.kind == _SYNC:
            synced_upto[record.path] = max(synced_upto.get(record.path, 0), record.offset)
    unsynced = [r for r in records if r.kind != _SYNC and r.index >= synced_upto.get(r.path, 0)]
    for record in reversed(unsynced):
        _undo(record)
    kept = [r for r in unsynced if rng.random() < keep_share]
    for record in kept:
        _redo(record)
    log.unlink(missing_ok=True)
    return CutReport(len(unsynced), len(unsynced) - len(kept), len({r.path for r in unsynced}))


def _undo(record: _Record) -> None:
    with open(record.path, "r+b") as file:
        if record.kind == _WRITE:
            file.seek(record.offset)
            file.write(record.old)
        else:  # a truncate: the bytes it cut off come back
            file.truncate(record.old_size)
            file.seek(record.offset)
            file.write(record.old)
        file.truncate(record.old_size)


def _redo(record: _Record) -> None:
    with open(record.path, "r+b") as file:
        if record.kind == _WRITE:
            file.seek(record.offset)
            file.write(record.new)
        else:
            file.truncate(record.offset)
