"""Door devices as the hub last saw them: role, status, health, gallery versions, delivery progress."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from edge.protocol import wire
from hub.store.core import StoreCore, read_time_or_none, stored_time
from hub.store.schema import DEVICE_ROLES, transaction


@dataclass(frozen=True, slots=True)
class Device:
    """A door device as the hub last saw it."""

    id: str
    name: str | None
    role: str
    status: str
    status_at: datetime | None
    last_seen: datetime | None
    health: dict[str, Any] | None
    gallery_version: int
    gallery_sent_version: int
    model_pack: str | None
    delivered_seq: int | None
    delivered_through: datetime | None
    retired_at: datetime | None = None
    drained_through: datetime | None = None

    @property
    def delivered(self) -> datetime | None:
        """The instant up to which the hub holds everything the device stamped (its events or an empty outbox)."""
        known = [t for t in (self.delivered_through, self.drained_through) if t is not None]
        return max(known) if known else None


_DEVICE_COLUMNS: Final = frozenset(
    {
        "name",
        "role",
        "status",
        "status_at",
        "last_seen",
        "health",
        "gallery_version",
        "gallery_sent_version",
        "model_pack",
        "delivered_seq",
        "delivered_through",
        "retired_at",
        "drained_through",
    }
)


def _device_value(column: str, value: object) -> object:
    if column == "role" and value not in DEVICE_ROLES:
        raise ValueError(f"device role must be one of {', '.join(DEVICE_ROLES)}, got {value!r}")
    if isinstance(value, datetime):
        return stored_time(value)
    if column == "health" and value is not None:
        if isinstance(value, wire.Health):
            return value.model_dump_json()
        if isinstance(value, Mapping):
            return json.dumps(value, ensure_ascii=False, sort_keys=True)
        raise TypeError(f"device health must be a wire.Health or a mapping, got {type(value).__name__}")
    if value is not None and not isinstance(value, str | int | float):
        raise TypeError(f"device {column} must be text, a number, a datetime or None, got {type(value).__name__}")
    return value


class DeviceStore(StoreCore):
    """Door devices: created on first sight or from the config, updated column by column."""

    def upsert_device(self, device_id: str, **fields: object) -> None:
        """Create the device if new and set the given columns (datetimes as UTC text, health as JSON).

        Columns: name, role (entrance, exit or both), status, status_at, last_seen, health (wire.Health or a
        mapping), gallery_version, gallery_sent_version, model_pack, delivered_seq, delivered_through.
        """
        wire.check_id(device_id, "device id")
        unknown = sorted(set(fields) - _DEVICE_COLUMNS)
        if unknown:
            raise ValueError(f"unknown device field(s) {', '.join(unknown)}")
        columns = sorted(fields)
        values = [_device_value(column, fields[column]) for column in columns]
        marks = ", ".join("?" * (len(columns) + 1))
        update = ", ".join(f"{column} = excluded.{column}" for column in columns)
        conflict = f"DO UPDATE SET {update}" if columns else "DO NOTHING"
        with transaction(self.db) as tx:
            tx.execute(
                f"INSERT INTO devices (id{''.join(', ' + c for c in columns)}) VALUES ({marks}) "
                f"ON CONFLICT(id) {conflict}",
                [device_id, *values],
            )

    _DEVICE_SELECT: Final = (
        "SELECT id, name, role, status, status_at, last_seen, health, gallery_version, gallery_sent_version, "
        "model_pack, delivered_seq, delivered_through, retired_at, drained_through FROM devices"
    )

    @staticmethod
    def _device(row: Sequence[Any]) -> Device:
        return Device(
            id=row[0],
            name=row[1],
            role=row[2],
            status=row[3],
            status_at=read_time_or_none(row[4]),
            last_seen=read_time_or_none(row[5]),
            health=None if row[6] is None else json.loads(row[6]),
            gallery_version=row[7],
            gallery_sent_version=row[8],
            model_pack=row[9],
            delivered_seq=row[10],
            delivered_through=read_time_or_none(row[11]),
            retired_at=read_time_or_none(row[12]),
            drained_through=read_time_or_none(row[13]),
        )

    def get_device(self, device_id: str) -> Device | None:
        """One device; None when unknown."""
        row = self.db.conn.execute(f"{self._DEVICE_SELECT} WHERE id = ?", (device_id,)).fetchone()
        return None if row is None else self._device(row)

    def list_devices(self, *, retired: bool = True) -> list[Device]:
        """Every device, by id (without the retired ones when ``retired`` is False)."""
        where = "" if retired else " WHERE retired_at IS NULL"
        return [self._device(row) for row in self.db.conn.execute(f"{self._DEVICE_SELECT}{where} ORDER BY id")]

    def note_drained(self, device_id: str, through: datetime) -> None:
        """The device's outbox was empty at ``through``: it has delivered everything it stamped before (monotonic)."""
        with transaction(self.db) as tx:
            tx.execute(
                "UPDATE devices SET drained_through = ? WHERE id = ? "
                "AND (drained_through IS NULL OR drained_through < ?)",
                (stored_time(through), device_id, stored_time(through)),
            )
