"""The Devices screen: door devices online, silent or retired, last seen, fps, outbox, gallery; retire, rename, role."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Label

from tui.live import DeviceState
from tui.protocol import Console
from tui.replies import rows_of
from tui.views.base import View
from tui.widgets.tables import age, number

DEVICE_STATE_WORDS = {"online": "ONLINE", "offline": "OFFLINE", "stopped": "STOPPED", "unknown": "UNKNOWN"}
ROLES = ("entrance", "exit", "both")
KEYS_HINT = "r retire  n rename  c role"


class DevicesView(View):
    """Door devices: online/offline/silent/retired, name, role, last seen, fps, outbox, gallery, temperature.

    The hub's ``devices.list`` gives name, role and retirement; the broker gives status and health live. A device
    is SILENT when nothing was heard from it for the hub's ``device_silent`` limit (told by ``site.info``) while not
    offline or stopped (those say so themselves); RETIRED wins over everything.
    """

    TITLE = "Devices"
    KEY = "d"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "retire", "Retire/reinstate"),
        Binding("n", "rename", "Rename"),
        Binding("c", "set_role", "Change role"),
    ]

    def __init__(self, console: Console) -> None:
        super().__init__(console, id="devices")
        self._drawn: tuple[int, int, int] | None = None
        self.hub_rows: dict[str, dict[str, Any]] = {}
        """``devices.list``'s rows by device id (name, role, retired_at, silent)."""
        self._hub_version = 0

    def compose(self) -> ComposeResult:
        yield Label("", id="devices-hint")
        yield self.table(
            "devices-table",
            [
                ("device", "Device"),
                ("name", "Name"),
                ("role", "Role"),
                ("state", "State"),
                ("seen", "Last seen"),
                ("fps", "FPS"),
                ("outbox", "Outbox"),
                ("oldest", "Oldest unacked"),
                ("gallery", "Gallery"),
                ("temp", "Temp C"),
            ],
            sort=[("device", None, False)],
        )

    def load(self) -> None:
        self.console.request("devices.list", then=self._listed)

    def _listed(self, result: Any) -> None:
        rows = rows_of(result)
        if rows is not None:
            self.hub_rows = {str(row.get("device")): row for row in rows}
            self._hub_version += 1
            self.console.live.merge_devices(rows)

    def site_known(self) -> None:
        self._drawn = None

    def state_word(self, device: DeviceState, now: datetime) -> str:
        """RETIRED, SILENT, or the device's own status in capitals."""
        row = self.hub_rows.get(device.device, {})
        if row.get("retired_at"):
            return "RETIRED"
        if device.status not in ("offline", "stopped"):
            limit = self.console.silent_after_min
            if limit is not None:
                if device.last_seen is None or now - device.last_seen > timedelta(minutes=limit):
                    return "SILENT"
            elif row.get("silent"):  # the hub has not told its limit: take its word from the listing
                return "SILENT"
        return DEVICE_STATE_WORDS.get(device.status, device.status.upper())

    def redraw(self, force: bool = False) -> None:
        now = self.console.clock()
        key = (self.console.live.version("devices"), self._hub_version, int(now.timestamp()))
        if key == self._drawn and not force:
            return
        self._drawn = key
        devices = self.console.live.devices()
        states = {d.device: self.state_word(d, now) for d in devices}
        self.sync.sync(
            {
                d.device: (
                    d.device,
                    str(self.hub_rows.get(d.device, {}).get("name") or "-"),
                    str(self.hub_rows.get(d.device, {}).get("role") or "-"),
                    states[d.device],
                    age((now - d.last_seen).total_seconds()) + " ago" if d.last_seen else "-",
                    number(d.fps),
                    number(d.outbox_depth),
                    age(d.oldest_unacked_s),
                    number(d.gallery_version),
                    number(d.temperature_c),
                )
                for d in devices
            }
        )
        words = list(states.values())
        if not devices:
            text = "No door devices yet: they appear when `rollcall edge run` connects."
        else:
            text = f"{words.count('ONLINE')} of {len(devices) - words.count('RETIRED')} online"
            for word in ("SILENT", "RETIRED"):
                if word in words:
                    text += f"   {words.count(word)} {word.lower()}"
            text += f"   {KEYS_HINT}"
        self.query_one("#devices-hint", Label).update(text)

    def selected(self) -> str | None:
        """The device under the cursor (None, with a note, when the table is empty)."""
        device = self.sync.cursor_key()
        if device is None:
            self.console.notify("Select a device first.", severity="warning")
        return device

    def _changed(self, message: str) -> Any:
        def done(result: Any) -> None:
            self.console.notify(message)
            self.load()

        return done

    def action_retire(self) -> None:
        device = self.selected()
        if device is None:
            return
        if self.hub_rows.get(device, {}).get("retired_at"):
            self.console.confirm(
                f"Put {device} back into service? Its days are judged again and it must deliver before they close.",
                lambda: self.console.request(
                    "devices.retire", {"device": device, "retired": False}, then=self._changed(f"{device} reinstated.")
                ),
            )
            return
        self.console.confirm(
            f"Retire {device}? It no longer holds attendance days open (its past sightings still count); "
            "r again puts it back.",
            lambda: self.console.request(
                "devices.retire", {"device": device, "retired": True}, then=self._changed(f"{device} retired.")
            ),
        )

    def action_rename(self) -> None:
        device = self.selected()
        if device is None:
            return

        def submitted(values: dict[str, str]) -> None:
            name = values["name"].strip()
            if not name:
                self.console.notify("The name must not be empty.", severity="error")
                return
            self.console.request(
                "devices.rename", {"device": device, "name": name}, then=self._changed(f"{device} is now {name!r}.")
            )

        current = str(self.hub_rows.get(device, {}).get("name") or "")
        self.console.ask(f"Rename {device} (its id stays)", [("name", "Display name", current)], submitted)

    def action_set_role(self) -> None:
        device = self.selected()
        if device is None:
            return

        def submitted(values: dict[str, str]) -> None:
            role = values["role"].strip().lower()
            if role not in ROLES:
                self.console.notify(f"The role must be one of {', '.join(ROLES)}, not {role!r}.", severity="error")
                return
            self.console.request(
                "devices.set_role", {"device": device, "role": role}, then=self._changed(f"{device} is now {role}.")
            )

        current = str(self.hub_rows.get(device, {}).get("role") or "")
        self.console.ask(f"Role of {device}", [("role", "entrance, exit or both", current)], submitted)
