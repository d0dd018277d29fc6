"""A workstation's card on the Screens view: its name and state, latest thumbnail and active window."""

from __future__ import annotations

from PIL import Image as PILImage
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label

from tui.live import WorkstationState
from tui.widgets.images import Picture, decode_image


class WorkstationCard(Vertical):
    """One workstation: name and state, its latest thumbnail, the active window."""

    can_focus = True

    def __init__(self, agent: str) -> None:
        super().__init__(classes="card", id=f"card-{agent}")
        self.agent = agent
        self.version = -1
        self.picture: PILImage.Image | None = None

    def compose(self) -> ComposeResult:
        yield Label(self.agent, classes="card-title", markup=False)
        yield Picture(None, classes="thumb")
        yield Label("", classes="card-window", markup=False)

    def ready(self) -> bool:
        """Whether the card and its parts are mounted (so it can be drawn)."""
        return self.is_mounted and bool(self.query(".card-window"))

    def show(self, state: WorkstationState) -> None:
        """Draw the agent's state (only when it changed)."""
        if state.version == self.version:
            return
        self.version = state.version
        status = "OFFLINE" if state.status in ("offline", "stopped") else (state.activity or state.status).upper()
        self.query_one(".card-title", Label).update(f"{state.agent} {status}")
        self.query_one(".card-window", Label).update(state.window or "-")
        if state.thumbnail is not None:
            self.picture = decode_image(state.thumbnail.data)
            self.query_one(".thumb", Picture).image = self.picture
