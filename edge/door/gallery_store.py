"""The door device's gallery on disk: the compressed gallery bytes, Fernet-encrypted with the device key."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from edge.protocol.files import write_atomic
from edge.recognition.gallery import Gallery
from edge.recognition.gallery_codec import GalleryError, decode_gallery
from edge.runtime.keys import KeyFileError, ensure_key, read_keys


class GalleryStore:
    """The device's gallery on disk: the compressed gallery bytes, Fernet-encrypted with the device key.

    The key file holds one or more Fernet keys, newest first, one per line: the newest encrypts, any decrypts
    (MultiFernet), so files written before a :meth:`rotate_key` stay readable. Every problem, the key file's
    included, is a :class:`GalleryError` naming the file.
    """

    def __init__(self, path: Path, key_file: Path) -> None:
        """Keep the gallery at ``path``, encrypted with the keys in ``key_file``."""
        self.path = path
        self.key_file = key_file

    def _keys(self) -> list[bytes]:
        try:
            return read_keys(self.key_file)
        except KeyFileError as exc:
            raise GalleryError(str(exc)) from None

    def _ensure_key(self) -> None:
        try:
            ensure_key(self.key_file)
        except KeyFileError as exc:
            raise GalleryError(str(exc)) from None

    def _fernet(self) -> MultiFernet:
        try:
            return MultiFernet([Fernet(key) for key in self._keys()])
        except OSError as exc:
            raise GalleryError(f"cannot read key file {self.key_file}: {exc.strerror or exc}") from None

    def save(self, data: bytes) -> None:
        """Encrypt and store the compressed gallery bytes atomically (mode 0600), creating the key if needed."""
        try:
            self._ensure_key()
            token = self._fernet().encrypt(data)
            write_atomic(self.path, token)
        except OSError as exc:
            raise GalleryError(f"cannot save gallery {self.path}: {exc.strerror or exc}") from None

    def load_data(self) -> bytes | None:
        """The decrypted compressed gallery bytes; None when no gallery was stored."""
        try:
            token = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise GalleryError(f"cannot read gallery {self.path}: {exc.strerror or exc}") from None
        if not self.key_file.exists():
            raise GalleryError(f"gallery {self.path} is stored but its key file {self.key_file} is missing")
        try:
            return self._fernet().decrypt(token)
        except InvalidToken:
            raise GalleryError(
                f"gallery {self.path} cannot be decrypted with the keys in {self.key_file} "
                "(encrypted with another key, or corrupt)"
            ) from None

    def load(self) -> Gallery | None:
        """The stored gallery; None when none was stored. Any problem raises :class:`GalleryError` naming the file."""
        data = self.load_data()
        if data is None:
            return None
        try:
            return decode_gallery(data)
        except GalleryError as exc:
            raise GalleryError(f"gallery {self.path}: {exc}") from None

    def rotate_key(self) -> None:
        """Put a new key first in the key file and re-encrypt the stored gallery with it; old keys stay readable."""
        try:
            self._ensure_key()
            keys = self._keys()
            token = self.path.read_bytes() if self.path.exists() else None
            if token is not None:
                try:
                    MultiFernet([Fernet(k) for k in keys]).decrypt(token)
                except InvalidToken:
                    raise GalleryError(
                        f"gallery {self.path} cannot be decrypted with the keys in {self.key_file}; not rotating"
                    ) from None
            keys.insert(0, Fernet.generate_key())
            # The key file first: should we stop between the two writes, the gallery is still under an old key
            # that the new key file keeps.
            write_atomic(self.key_file, b"".join(key + b"\n" for key in keys))
            if token is not None:
                write_atomic(self.path, MultiFernet([Fernet(k) for k in keys]).rotate(token))
        except OSError as exc:
            raise GalleryError(f"cannot rotate key {self.key_file}: {exc.strerror or exc}") from None
