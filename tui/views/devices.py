"""The Devices screen: door devices online or not, last seen, fps, outbox, oldest unacked, gallery, temperature."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.widgets import Label

from tui.protocol import Console
from tui.replies import rows_of
from tui.views.base import View
from tui.widgets.tables import age, number

DEVICE_STATE_WORDS = {"online": "ONLINE", "offline": "OFFLINE", "stopped": "STOPPED", "unknown": "UNKNOWN"}


class DevicesView(View):
    """Door devices: online/offline, last seen, fps, outbox, oldest unacked, gallery, temperature."""

    TITLE = "Devices"
    KEY = "d"

    def __init__(self, console: Console) -> None:
        super().__init__(console, id="devices")
        self._drawn: tuple[int, int] | None = None

    def compose(self) -> ComposeResult:
        yield Label("", id="devices-hint")
        yield self.table(
            "devices-table",
            [
                ("device", "Device"),
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
            self.console.live.merge_devices(rows)

    def redraw(self, force: bool = False) -> None:
        now = self.console.clock()
        key = (self.console.live.version("devices"), int(now.timestamp()))
        if key == self._drawn and not force:
            return
        self._drawn = key
        devices = self.console.live.devices()
        self.sync.sync(
            {
                d.device: (
                    d.device,
                    DEVICE_STATE_WORDS.get(d.status, d.status.upper()),
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
        online = sum(1 for d in devices if d.status == "online")
        self.query_one("#devices-hint", Label).update(
            f"{online} of {len(devices)} online"
            if devices
            else "No door devices yet: they appear when `rollcall edge run` connects."
        )
