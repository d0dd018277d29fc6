"""Device key files: Fernet keys at rest, one per line, newest first, created 0600 and refused when open to others."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet

from edge.protocol.files import fsync_dir


class KeyFileError(Exception):
    """A key file that cannot be used (open to group or others, not a file, no key, a line that is no key)."""


def _check_key_mode(key_file: Path) -> None:
    info = key_file.stat()
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"key file {key_file} is not a regular file")
    if info.st_mode & 0o077:
        raise KeyFileError(
            f"key file {key_file} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run: chmod 600 {key_file}"
        )


def ensure_key(key_file: Path) -> None:
    """Create ``key_file`` (mode 0600) with one new Fernet key if it is absent; refuse one open to group/others.

    An existing file is read too, so a file that holds no usable key is refused at start-up, not when the first
    gallery arrives to be encrypted with it.
    """
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = key_file.with_name(f".{key_file.name}.new-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process made it first: keep theirs
                os.link(tmp, key_file)
        finally:
            tmp.unlink()
        fsync_dir(key_file.parent)
    read_keys(key_file)


def read_keys(key_file: Path) -> list[bytes]:
    """The Fernet keys in ``key_file``, newest first (one per line; blank lines ignored)."""
    _check_key_mode(key_file)
    keys = []
    for number, line in enumerate(key_file.read_bytes().splitlines(), start=1):
        key = line.strip()
        if not key:
            continue
        try:
            Fernet(key)
        except ValueError:
            raise KeyFileError(
                f"key file {key_file}: line {number} is not a Fernet key (44 characters of url-safe base64); "
                "restore it from a backup"
            ) from None
        keys.append(key)
    if not keys:
        raise KeyFileError(f"key file {key_file} holds no key; restore it from a backup")
    return keys
