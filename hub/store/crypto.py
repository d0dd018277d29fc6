"""Encryption at rest: the key file's Fernet keys, the key check, decryption, and key rotation."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from edge.protocol.files import write_atomic
from edge.runtime.keys import KeyFileError, ensure_key, read_keys
from hub.store.core import StoreCore
from hub.store.errors import StoreError
from hub.store.schema import transaction

KEY_CHECK: Final = b"rollcall-hub-key-check-1"
"""The plain text of ``meta.key_check``: it decrypts only with the key the database was encrypted with."""


class KeyStore(StoreCore):
    """The store's keys: checked at start-up, re-read when the key file changes, rotated on request."""

    def _check_key(self) -> None:
        check = self.get_meta("key_check")
        if not self.key_file.exists():
            encrypted = self.db.conn.execute(
                "SELECT (SELECT count(*) FROM templates) + (SELECT count(*) FROM snapshots) "
                "+ (SELECT count(*) FROM captures) + (SELECT count(*) FROM dead_letters)"
            ).fetchone()[0]
            if check is not None or encrypted:
                raise StoreError(
                    f"key file {self.key_file} is missing but {self.path} holds data encrypted with it; restore the "
                    "key file from backup (a new key cannot read the existing templates and pictures)"
                )
        try:
            ensure_key(self.key_file)
        except KeyFileError as exc:
            raise StoreError(str(exc)) from None
        fernet = self._crypto()
        if check is None:
            self.set_meta("key_check", fernet.encrypt(KEY_CHECK).decode())
            return
        try:
            fernet.decrypt(check.encode())
        except InvalidToken:
            raise StoreError(
                f"key file {self.key_file} does not hold the key {self.path} was encrypted with; "
                "restore the right key file"
            ) from None

    def _crypto(self) -> MultiFernet:
        """The keys of the key file, newest first; re-read when the file changes (a rotation by another process)."""
        try:
            info = self.key_file.stat()
        except OSError as exc:
            raise StoreError(f"cannot read key file {self.key_file}: {exc.strerror or exc}") from None
        signature = (info.st_ino, info.st_mtime_ns, info.st_size)
        if self._fernet is None or signature != self._key_signature:
            try:
                keys = read_keys(self.key_file)
            except KeyFileError as exc:
                raise StoreError(str(exc)) from None
            except OSError as exc:
                raise StoreError(f"cannot read key file {self.key_file}: {exc.strerror or exc}") from None
            self._fernet = MultiFernet([Fernet(key) for key in keys])
            self._key_signature = signature
        return self._fernet

    def _decrypt(self, token: bytes, what: str) -> bytes:
        try:
            return self._crypto().decrypt(token)
        except InvalidToken:
            raise StoreError(f"{what} cannot be decrypted with the keys in {self.key_file}") from None

    def rotate_key(self, *, retire_old_keys: bool = False) -> tuple[int, int]:
        """Put a new key first in the key file and re-encrypt every template, dead letter and picture file with it.

        Returns (database rows, files) re-encrypted. The key file is written first and keeps the old keys, so a stop
        part-way leaves everything readable; run it again to finish. With ``retire_old_keys`` the old keys are
        dropped from the key file once everything is re-encrypted and the database is compacted, so copies made
        earlier (backups) become unreadable with the new key file: do that only with the hub stopped, or from the
        hub process, so nothing is written under an old key meanwhile.
        """
        conn = self.db.conn
        # Everything must decrypt before anything changes: refuse a rotation that would strand unreadable data.
        rows = conn.execute("SELECT id, embedding FROM templates").fetchall()
        letters = conn.execute("SELECT id, payload FROM dead_letters").fetchall()
        for _, token in [*rows, *letters]:
            self._decrypt(token, "a database row")
        files = self._picture_files()
        for path in files:
            self._decrypt(path.read_bytes(), f"picture {path}")
        try:
            keys = read_keys(self.key_file)
        except KeyFileError as exc:
            raise StoreError(str(exc)) from None
        new_key = Fernet.generate_key()
        write_atomic(self.key_file, b"".join(key + b"\n" for key in [new_key, *keys]))
        self._fernet = None  # re-read the key file now, whatever its stat says
        fernet = self._crypto()
        with transaction(self.db) as tx:
            tx.executemany("UPDATE templates SET embedding = ? WHERE id = ?", [(fernet.rotate(t), i) for i, t in rows])
            tx.executemany(
                "UPDATE dead_letters SET payload = ? WHERE id = ?", [(fernet.rotate(t), i) for i, t in letters]
            )
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('key_check', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (fernet.encrypt(KEY_CHECK).decode(),),
            )
        for path in files:
            write_atomic(path, fernet.rotate(path.read_bytes()))
        if retire_old_keys:
            self._compact()  # the old ciphertexts leave free pages and the WAL before their key goes
            write_atomic(self.key_file, new_key + b"\n")
            self._fernet = None
            self._crypto()
        return len(rows) + len(letters), len(files)

    def _picture_files(self) -> list[Path]:
        rows = self.db.conn.execute("SELECT file FROM snapshots UNION ALL SELECT file FROM captures").fetchall()
        return [path for (rel,) in rows if (path := self.data_dir / rel).exists()]
