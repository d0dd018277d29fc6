"""The Screens screen: a grid of workstation thumbnails; open one large, send a message, lock."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid
from textual.events import Resize
from textual.widgets import Label

from tui.protocol import Console
from tui.views.base import View
from tui.widgets.cards import WorkstationCard


class ScreensView(View):
    """A grid of workstation thumbnails; open one large, send a message, lock."""

    TITLE = "Screens"
    KEY = "s"
    CARD_WIDTH = 26
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open large"),
        Binding("m", "message", "Message"),
        Binding("l", "lock", "Lock"),
        Binding("left", "move(-1, 0)", "Left", show=False),
        Binding("right", "move(1, 0)", "Right", show=False),
        Binding("up", "move(0, -1)", "Up", show=False),
        Binding("down", "move(0, 1)", "Down", show=False),
    ]

    def __init__(self, console: Console) -> None:
        super().__init__(console, id="screens")
        self.cards: dict[str, WorkstationCard] = {}
        self._drawn: int | None = None
        self._pending = False
        self.columns = 3

    def compose(self) -> ComposeResult:
        yield Label(
            "No workstations yet. Screen agents (`rollcall agent run` on a workstation) appear here "
            "as soon as they connect.",
            id="screens-hint",
        )
        yield Grid(id="screens-grid")

    def on_resize(self, event: Resize) -> None:
        self.columns = max(1, event.size.width // self.CARD_WIDTH)
        self.query_one("#screens-grid", Grid).styles.grid_size_columns = self.columns

    def redraw(self, force: bool = False) -> None:
        version = self.console.live.version("screens")
        if version == self._drawn and not force and not self._pending:
            return
        self._drawn = version
        workstations = self.console.live.workstations()
        grid = self.query_one("#screens-grid", Grid)
        new = [WorkstationCard(w.agent) for w in workstations if w.agent not in self.cards]
        if new:
            for card in new:
                self.cards[card.agent] = card
            grid.mount_all(new)
        self._pending = not self._draw_cards()  # cards still mounting are drawn on a later tick
        online = sum(1 for w in workstations if w.status == "online")
        hint = self.query_one("#screens-hint", Label)
        if workstations:
            hint.update(
                f"{online} of {len(workstations)} workstations online   arrows move  Enter large  m message  l lock"
            )

    def _draw_cards(self) -> bool:
        drawn = True
        for state in self.console.live.workstations():
            card = self.cards.get(state.agent)
            if card is None or not card.ready():
                drawn = False
            else:
                card.show(state)
        if drawn and self.app.focused is self and self.cards:
            self.focus_main()  # the first workstations arrived while this screen was shown
        return drawn

    def focus_main(self) -> None:
        selected = self.selected()
        if selected is not None:
            selected.focus()
        elif self.cards:
            next(iter(self.cards.values())).focus()
        else:
            self.focus()

    def selected(self) -> WorkstationCard | None:
        """The focused workstation card."""
        focused = self.app.focused
        return focused if isinstance(focused, WorkstationCard) else None

    def action_move(self, dx: int, dy: int) -> None:
        cards = list(self.query(WorkstationCard))
        if not cards:
            return
        current = self.selected()
        index = cards.index(current) if current in cards else 0
        index = min(max(0, index + dx + dy * self.columns), len(cards) - 1)
        cards[index].focus()
        cards[index].scroll_visible()

    def _agent_or_hint(self) -> WorkstationCard | None:
        card = self.selected()
        if card is None:
            self.console.notify("No workstation selected (none connected yet?).", severity="warning")
        return card

    def action_open(self) -> None:
        card = self._agent_or_hint()
        if card is None:
            return
        state = self.console.live.workstation(card.agent)
        caption = f"{card.agent}: {state.window or '-'}" if state else card.agent
        self.console.show_image(card.agent, card.picture, caption)

    def _command(self, agent: str, action: Literal["message", "lock"], text: str | None = None) -> None:
        # Through the hub: the broker lets only the hub write agents' command topics, and the hub checks the role.
        params: dict[str, Any] = {"agent": agent, "action": action}
        if text is not None:
            params["text"] = text
        self.console.request("agents.command", params, then=lambda _: self.console.notify(f"Sent {action} to {agent}."))

    def action_message(self) -> None:
        card = self._agent_or_hint()
        if card is None:
            return
        agent = card.agent

        def submitted(values: dict[str, str]) -> None:
            if values["text"].strip():
                self._command(agent, "message", values["text"].strip())

        self.console.ask(f"Message to {agent}", [("text", "Text shown on the screen", "")], submitted)

    def action_lock(self) -> None:
        card = self._agent_or_hint()
        if card is None:
            return
        agent = card.agent

        self.console.confirm(f"Lock the screen of {agent}?", lambda: self._command(agent, "lock"))
