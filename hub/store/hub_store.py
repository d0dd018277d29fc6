"""The hub's store as one object: every part of :mod:`hub.store` on one database, picture folder and key file."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from cryptography.fernet import MultiFernet

from hub.config import HubSettings
from hub.store.agents import AgentStore
from hub.store.attendance import AttendanceStore
from hub.store.devices import DeviceStore
from hub.store.events import EventStore
from hub.store.people import PeopleStore
from hub.store.pictures import PictureStore
from hub.store.schema import open_database


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

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    def __enter__(self) -> HubStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
