"""Device key files: created 0600, and refused with a message that says what to do when open to others or garbage."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from edge.runtime.keys import KeyFileError, ensure_key, read_keys


def test_a_new_key_is_made_0600_and_reads_back(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "device.key"
    ensure_key(key_file)
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert len(read_keys(key_file)) == 1


def test_a_key_open_to_others_is_refused_naming_the_chmod(tmp_path: Path) -> None:
    key_file = tmp_path / "device.key"
    key_file.write_bytes(Fernet.generate_key() + b"\n")
    key_file.chmod(0o644)
    with pytest.raises(KeyFileError) as info:
        ensure_key(key_file)
    assert str(key_file) in str(info.value) and f"chmod 600 {key_file}" in str(info.value)


@pytest.mark.parametrize("content", [b"garbage\n", b"not-a-key-but-44-characters-long-xxxxxxxxxxx\n", b"\n\n"])
def test_a_garbage_key_is_refused_when_ensured(tmp_path: Path, content: bytes) -> None:
    key_file = tmp_path / "device.key"
    key_file.write_bytes(content)
    key_file.chmod(0o600)
    with pytest.raises(KeyFileError) as info:
        ensure_key(key_file)
    assert str(key_file) in str(info.value)
    assert "restore it from a backup" in str(info.value)
