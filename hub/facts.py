"""What alerting is told about the site: the facts the state rules judge, and the Telegram bot's answers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Literal

from hub.alerts.morning import ForgottenCheckout
from hub.alerts.rules import DeviceFacts, PersonFacts, WorkstationFacts
from hub.board import PresenceBoard
from hub.context import HubContext
from hub.domain.attendance import AttendanceRules, local_day
from hub.store import HubStore


def _device_status(value: str | None) -> Literal["online", "offline", "stopped"] | None:
    return (
        "online"
        if value == "online"
        else "offline"
        if value == "offline"
        else "stopped"
        if value == "stopped"
        else None
    )


class SiteFacts:
    """Reads the store and the presence board for :class:`~hub.alerts.runtime.Alerting` (its ``AlertFacts``)."""

    def __init__(self, context: HubContext, board: PresenceBoard) -> None:
        self.context = context
        self.board = board

    def devices(self, now: datetime) -> list[DeviceFacts]:
        """Every door device's status and latest health figures (retired devices raise no alerts)."""
        facts = []
        for device in self.context.store.list_devices(retired=False):
            health = device.health or {}
            facts.append(
                DeviceFacts(
                    device.id,
                    status=_device_status(device.status),
                    status_at=device.status_at,
                    outbox_depth=health.get("outbox_depth"),
                    oldest_unacked_s=health.get("oldest_unacked_s"),
                    temperature_c=health.get("temperature_c"),
                    disk_free_mb=health.get("disk_free_mb"),
                    at=device.last_seen,
                )
            )
        return facts

    def workstations(self) -> list[WorkstationFacts]:
        """Every workstation agent, idle since when (None: active)."""
        facts = []
        for agent in self.context.store.list_agents():
            idle_since = None
            if agent.get("state") == "idle" and agent.get("state_since"):
                idle_since = datetime.fromisoformat(str(agent["state_since"]))
            facts.append(WorkstationFacts(str(agent["id"]), idle_since, agent.get("user")))
        return facts

    def people(self, now: datetime) -> list[PersonFacts]:
        """Every person's presence and whether they arrived today."""
        store = self.context.store
        today = local_day(now, self.board.attendance_rules)
        arrived = {row.person_id for row in store.attendance(today) if row.first_in is not None}
        names = {p.id: p.name for p in store.list_people()}
        facts = []
        for person_id, name in names.items():
            state = self.board.state(person_id)
            facts.append(
                PersonFacts(
                    person_id,
                    state.state if state else "unknown",
                    state.since if state else None,
                    person_id in arrived,
                    name=name,
                )
            )
        return facts

    def inside(self, now: datetime) -> list[str]:
        """The names of the people in now, as on the presence board."""
        return [entry.name for entry in self.board.payload(now).people if entry.state == "in"]

    def devices_online(self) -> tuple[int, int]:
        """(devices online, devices known)."""
        devices = self.context.store.list_devices()
        return sum(1 for d in devices if d.status == "online"), len(devices)

    def attendance_answer(self, day: date | None) -> tuple[str, Sequence[tuple[str, bytes]]]:
        """The day's attendance with first-in photos, for the Telegram bot (site-local times).

        Without a day: the current attendance day (before ``attendance.day_starts_at`` that is yesterday's date).

        Runs on the bot's thread, so it opens a store of its own (WAL: readers never block the writer).
        """
        rules = self.board.attendance_rules
        day = day or local_day(self.context.clock(), rules)  # the current attendance day, not the UTC date
        # quick_check off: the hub checked the file when it started, and this runs on every bot request.
        with HubStore.from_settings(self.context.config.hub, quick_check=False) as store:
            names = {p.id: p.name or p.id for p in store.list_people()}
            rows = store.attendance(day)
            photos: list[tuple[str, bytes]] = []
            heading = f"Attendance {day.isoformat()} ({rules.timezone} time):"
            lines = [heading] if rows else [f"No attendance on {day.isoformat()}."]
            for row in rows:
                first_in = row.first_in.astimezone(rules.zone).strftime("%H:%M") if row.first_in else "-"
                last_out = row.last_out.astimezone(rules.zone).strftime("%H:%M") if row.last_out else "-"
                name = names.get(row.person_id, row.person_id)
                lines.append(f"{name}: in {first_in}, out {last_out}, {row.present_s / 3600:.1f} h")
                photo = store.load_snapshot(row.first_in_event) if row.first_in_event and len(photos) < 10 else None
                if photo:
                    photos.append((f"{name}, first in {first_in}", photo))
        return "\n".join(lines), photos

    def attendance_rules(self) -> AttendanceRules:
        """How the site's attendance days run (time zone, day start), as the presence board applies them."""
        return self.board.attendance_rules

    def forgotten_checkouts(self, day: date, now: datetime) -> list[ForgottenCheckout]:
        """Who forgot to check out on ``day`` (a past attendance day), by the stored outcome ``forgot_checkout``.

        Runs the sign-off sweep first, so a day that ended moments ago has been computed after its end (that is when
        a forgotten check-out shows) and is final if it can be.
        """
        self.board.sign_off(now)
        store = self.context.store
        names = {p.id: p.name for p in store.list_people()}
        return [
            ForgottenCheckout(row.person_id, names.get(row.person_id), row.first_in, row.final)
            for row in store.attendance(day)
            if row.status == "forgot_checkout"
        ]
