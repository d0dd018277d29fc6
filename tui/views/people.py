"""The People screen: everyone enrolled; enrol from photos or at a door, remove with confirmation."""

from __future__ import annotations

import shlex
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Label

from tui.protocol import Console
from tui.replies import parse_time, rows_of
from tui.views.base import Searchable
from tui.widgets.tables import local_time


class PeopleView(Searchable):
    """Everyone enrolled; enrol from photos or at a door, remove with confirmation."""

    TITLE = "People"
    KEY = "u"
    SEARCH_ID = "people-search"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new_person", "New person"),
        Binding("g", "enrol_at_device", "Enrol at door"),
        Binding("delete", "remove", "Remove"),
    ]

    def __init__(self, console: Console) -> None:
        super().__init__(console, id="people")
        self.people: list[dict[str, Any]] = []
        self.loaded = False
        self._drawn: tuple[int, str] | None = None

    def compose(self) -> ComposeResult:
        yield self.search_box("search name or id; Enter: back to the list, Esc: clear")
        yield Label("n new person from photos   g enrol at a door   Del remove", id="people-hint")
        yield self.table(
            "people-table",
            [("name", "Name"), ("id", "ID"), ("templates", "Templates"), ("created", "Enrolled")],
            sort=[("name", str.casefold, False)],
        )

    def load(self) -> None:
        self.console.request("people.list", then=self._listed)

    def _listed(self, result: Any) -> None:
        rows = rows_of(result)
        if rows is not None:
            self.people = rows
            self.loaded = True
            self.redraw(force=True)

    def redraw(self, force: bool = False) -> None:
        drawn = (id(self.people), self.query_text)  # a new reply is a new list; the search narrows it
        if drawn == self._drawn and not force:
            return
        self._drawn = drawn
        now = self.console.clock()
        self.sync.sync(
            {
                str(p["person_id"]): (
                    str(p.get("name")),
                    str(p["person_id"]),
                    str(p.get("templates", 0)),
                    local_time(parse_time(p.get("created_at")), self.console.zone, now),
                )
                for p in self.people
                if self.matches(str(p.get("name")), str(p["person_id"]))
            }
        )
        hint = self.query_one("#people-hint", Label)
        if self.loaded and not self.people:
            hint.update("Nobody enrolled yet. n: new person from photos.")
        elif self.query_text:
            hint.update(
                f"showing {self.sync.table.row_count} of {len(self.people)} (search: {self.query_text!r})   "
                "/ search  Esc clear"
            )
        else:
            hint.update(f"{len(self.people)} people   / search   n new from photos   g enrol at a door   Del remove")

    def current(self) -> dict[str, Any] | None:
        """The person under the cursor."""
        return self.row_under_cursor(self.people)

    def action_new_person(self) -> None:
        def submitted(values: dict[str, str]) -> None:
            if not values["name"].strip():
                return
            try:
                paths = shlex.split(values["paths"])
            except ValueError as exc:
                self.console.notify(f"Could not read the paths: {exc}", severity="error")
                return
            self._enrol(values["name"].strip(), paths)

        self.console.ask(
            "New person",
            [("name", "Name", ""), ("paths", "Photos or folders on the hub (space-separated, quote spaces)", "")],
            submitted,
        )

    def _enrol(self, name: str, paths: list[str]) -> None:
        requester = self.console.requester
        timeout = self.console.request_timeout_s

        def job() -> tuple[str, Any]:
            added = requester.call("people.add", {"name": name}, timeout)
            person_id = str(added["person_id"])
            if not paths:
                return person_id, None
            photo_paths: list[Any] = list(paths)
            return person_id, requester.call(
                "people.enrol_photos", {"person_id": person_id, "paths": photo_paths}, max(timeout, 120.0)
            )

        def done(result: tuple[str, Any]) -> None:
            person_id, enrolled = result
            lines = [f"{name} added as {person_id}."]
            if isinstance(enrolled, dict):
                lines.append(f"{enrolled.get('enrolled', 0)} photo(s) enrolled.")
                for photo in enrolled.get("photos") or []:
                    if isinstance(photo, dict):
                        word = "OK     " if photo.get("ok") else "REFUSED"
                        reason = f": {photo.get('reason')}" if photo.get("reason") else ""
                        lines.append(f"{word} {photo.get('photo')}{reason}")
            else:
                lines.append("No photos given: enrol at a door with g, or add photos later.")
            self.console.show_report(f"Enrolled {name}", lines)
            self.load()

        self.console.run_job(job, then=done)

    def action_enrol_at_device(self) -> None:
        person = self.current()
        if person is None:
            self.console.notify("Select a person first.", severity="warning")
            return
        devices = [d.device for d in self.console.live.devices()]

        def submitted(values: dict[str, str]) -> None:
            try:
                count = int(values["count"])
            except ValueError:
                self.console.notify("The count must be a whole number from 1 to 50.", severity="error")
                return
            params: dict[str, Any] = {
                "person_id": str(person["person_id"]),
                "device": values["device"].strip(),
                "count": count,
            }
            self.console.request(
                "people.enrol_at_device",
                params,
                then=lambda r: self.console.notify(
                    f"Asked {params['device']} for {count} captures of {person.get('name')}; stand at the camera."
                ),
            )

        self.console.ask(
            f"Enrol {person.get('name')} at a door",
            [("device", "Door device id", devices[0] if devices else ""), ("count", "Captures (1-50)", "5")],
            submitted,
        )

    def action_remove(self) -> None:
        person = self.current()
        if person is None:
            self.console.notify("Select a person first.", severity="warning")
            return
        person_id = str(person["person_id"])

        def removed(result: Any) -> None:
            self.console.notify(f"Removed {person.get('name')} ({person_id}) and their templates and photos.")
            self.load()

        self.console.confirm(
            f"Remove {person.get('name')} ({person_id})? This erases their templates, photos and their "
            "identity in past events, on the hub and every door.",
            lambda: self.console.request("people.remove", {"person_id": person_id}, then=removed),
        )
