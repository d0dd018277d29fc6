"""Modal screens: help, confirmation, small forms, a text report and a large image."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image as PILImage
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from tui.widgets.images import Picture


class HelpScreen(ModalScreen[None]):
    """Every key binding, per screen."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, sections: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        lines: list[str] = []
        for title, bindings in self.sections:
            lines.append(title.upper())
            lines.extend(f"  {key:<9} {description}" for key, description in bindings)
        with Vertical(classes="dialog", id="help"):
            yield Label("Keys (Esc closes)", classes="title")
            with VerticalScroll(classes="report"):
                yield Static("\n".join(lines), id="help-text", markup=False)

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()  # arrows and PgUp/PgDn scroll the list

    def action_close(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no; `y` confirms, `n` or Esc cancels."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm"):
            yield Label(self.question, classes="title", id="question")
            yield Label("y: yes   n or Esc: no", classes="hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class FormScreen(ModalScreen[dict[str, str] | None]):
    """A few text fields; Enter in the last field (or Ctrl+S) submits, Esc cancels."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Submit"),
    ]

    def __init__(self, title: str, fields: Sequence[tuple[str, str, str]], hint: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="form"):
            yield Label(self.title_text, classes="title")
            for key, label, value in self.fields:
                yield Label(label)
                yield Input(value=value, id=f"field-{key}")
            yield Label(self.hint or "Enter: next / submit   Esc: cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        index = inputs.index(event.input)
        if index + 1 < len(inputs):
            inputs[index + 1].focus()
        else:
            self.action_submit()

    def action_submit(self) -> None:
        self.dismiss({key: self.query_one(f"#field-{key}", Input).value for key, _, _ in self.fields})

    def action_cancel(self) -> None:
        self.dismiss(None)


class _ViewerScreen(ModalScreen[None]):
    """A modal that only shows something; any of Esc, Enter or q closes it (subclasses inherit these bindings)."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("enter", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def action_close(self) -> None:
        self.dismiss(None)


class ReportScreen(_ViewerScreen):
    """A text report (enrolment results, what was erased); any of Esc, Enter or q closes it."""

    def __init__(self, title: str, lines: Sequence[str]) -> None:
        super().__init__()
        self.title_text = title
        self.lines = lines

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="report"):
            yield Label(self.title_text, classes="title")
            with VerticalScroll(classes="report"):
                yield Static("\n".join(self.lines), id="report-text", markup=False)
            yield Label("Esc or Enter: close", classes="hint")


class ImageScreen(_ViewerScreen):
    """One image, as large as the terminal allows."""

    def __init__(self, title: str, image: PILImage.Image | None, caption: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.picture = image
        self.caption = caption

    def compose(self) -> ComposeResult:
        with Vertical(classes="large", id="large"):
            yield Label(self.title_text, classes="title")
            if self.picture is not None:
                yield Picture(self.picture, classes="picture")
            else:
                yield Label("(no image yet)")
            yield Label(self.caption + "   Esc: close", markup=False)
