"""The Alerts screen: alerts, open ones first; acknowledge, resolve, details with the snapshot."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from PIL import Image as PILImage
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Static

from edge.protocol import wire
from tui.protocol import Console
from tui.replies import parse_time, rows_of, snapshot_data
from tui.views.base import View
from tui.widgets.images import Picture, decode_image
from tui.widgets.tables import sortable_time

ALERT_STATE_WORDS = {"open": "OPEN", "acknowledged": "ACK", "resolved": "RESOLVED"}
ALERT_STATE_ORDER = {"OPEN": 0, "ACK": 1, "RESOLVED": 2}
SEVERITY_WORDS = {"info": "INFO", "warning": "WARN", "critical": "CRIT"}


class AlertsView(View):
    """Alerts, open ones first; acknowledge, resolve, details with the snapshot."""

    TITLE = "Alerts"
    KEY = "a"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k", "acknowledge", "Acknowledge"),
        Binding("r", "resolve", "Resolve"),
        Binding("enter", "open_snapshot", "Snapshot large", show=False),
    ]

    def __init__(self, console: Console) -> None:
        super().__init__(console, id="alerts")
        self._drawn: int | None = None
        self._detail_for: str | None = None
        self.snapshot: PILImage.Image | None = None
        self.snapshot_event: str | None = None

    def compose(self) -> ComposeResult:
        yield self.table(
            "alerts-table",
            [
                ("state", "State"),
                ("severity", "Sev"),
                ("rule", "Rule"),
                ("subject", "Subject"),
                ("count", "N"),
                ("last", "Last seen"),
            ],
            sort=[("state", ALERT_STATE_ORDER.__getitem__, False), ("last", None, True)],
        )
        with Horizontal(id="alert-details", classes="details"):
            yield Static("No alerts. New ones appear here as the hub raises them.", id="alert-text", markup=False)
            yield Picture(None, id="alert-snapshot", classes="photo")

    def load(self) -> None:
        self.console.request("alerts.list", {"limit": 500}, then=self._listed)

    def _listed(self, result: Any) -> None:
        rows = rows_of(result)
        if rows is not None:
            self.console.live.merge_alerts(rows)

    def redraw(self, force: bool = False) -> None:
        version = self.console.live.version("alerts")
        if version == self._drawn and not force:
            return
        self._drawn = version
        zone = self.console.zone
        desired = {
            a.alert_id: (
                ALERT_STATE_WORDS[a.state],
                SEVERITY_WORDS[a.severity],
                a.rule,
                a.subject,
                str(a.count),
                sortable_time(a.last_at, zone),
            )
            for a in self.console.live.alerts()
        }
        self.sync.sync(desired)
        self._show_details(force=True)

    def current(self) -> wire.Alert | None:
        """The alert under the cursor."""
        key = self.sync.cursor_key()
        return None if key is None else self.console.live.alert(key)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_details()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_snapshot()

    def _show_details(self, force: bool = False) -> None:
        alert = self.current()
        text = self.query_one("#alert-text", Static)
        if alert is None:
            text.update("No alerts. New ones appear here as the hub raises them.")
            return
        if alert.alert_id == self._detail_for and not force:
            return
        zone = self.console.zone
        lines = [
            f"{ALERT_STATE_WORDS[alert.state]} {SEVERITY_WORDS[alert.severity]} {alert.rule}: {alert.subject}",
            alert.message,
            f"first {sortable_time(alert.first_at, zone)}  last {sortable_time(alert.last_at, zone)}  "
            f"seen {alert.count}x",
        ]
        if alert.device:
            lines.append(f"device {alert.device}")
        if alert.person_id:
            lines.append(f"person {alert.person_id}")
        if alert.acknowledged_by:
            lines.append(f"acknowledged by {alert.acknowledged_by}")
        if self.snapshot_event and alert.alert_id == self._detail_for:
            lines.append(f"snapshot of event {self.snapshot_event} (Enter: large)")
        text.update("\n".join(lines))
        if alert.alert_id != self._detail_for:
            self._detail_for = alert.alert_id
            self.snapshot = None
            self.snapshot_event = None
            self.query_one("#alert-snapshot", Picture).image = None
            if alert.device:
                self._fetch_snapshot(alert)

    def _fetch_snapshot(self, alert: wire.Alert) -> None:
        """Find the alert's latest event with a snapshot (same door and person, not after it) and fetch it."""
        requester = self.console.requester
        timeout = self.console.request_timeout_s

        def job() -> tuple[str, str, bytes] | None:
            events = rows_of(requester.call("events.recent", {"limit": 200}, timeout))
            if events is None:
                return None
            for row in events:  # newest first
                if not row.get("has_snapshot") or row.get("device") != alert.device:
                    continue
                if row.get("person_id") != alert.person_id and alert.rule != "unknown_face":
                    continue
                if alert.rule == "unknown_face" and row.get("person_id") is not None:
                    continue
                at = parse_time(row.get("at"))
                if at is not None and at > alert.last_at + timedelta(seconds=1):
                    continue
                event_id = str(row["event_id"])
                shot = requester.call("snapshot.get", {"event_id": event_id}, timeout)
                data = snapshot_data(shot)
                return None if data is None else (alert.alert_id, event_id, data)
            return None

        self.console.run_job(job, then=self._snapshot_arrived, quiet=True)

    def _snapshot_arrived(self, result: tuple[str, str, bytes] | None) -> None:
        if result is None:
            return
        alert_id, event_id, data = result
        if alert_id != self._detail_for:
            return
        self.snapshot = decode_image(data)
        self.snapshot_event = event_id
        self.query_one("#alert-snapshot", Picture).image = self.snapshot
        self._show_details(force=True)

    def _change(self, method: str) -> None:
        alert = self.current()
        if alert is None:
            self.console.notify("No alert selected.", severity="warning")
            return
        self.console.request(method, {"alert_id": alert.alert_id}, then=self._changed)

    def _changed(self, result: Any) -> None:
        if isinstance(result, dict):
            self.console.live.merge_alerts([result])
            self.console.notify(f"Alert {ALERT_STATE_WORDS.get(str(result.get('state')), result.get('state'))}.")

    def action_acknowledge(self) -> None:
        self._change("alerts.acknowledge")

    def action_resolve(self) -> None:
        self._change("alerts.resolve")

    def action_open_snapshot(self) -> None:
        alert = self.current()
        if alert is not None:
            self.console.show_image(f"{alert.rule}: {alert.subject}", self.snapshot, alert.message)
