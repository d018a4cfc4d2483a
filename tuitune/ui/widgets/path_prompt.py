"""A one-line modal that asks for a file path (load/save config); dismisses with the text or None."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class PathPrompt(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, title: str, *, value: str = "", placeholder: str = "path/to/file.toml") -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Grid(classes="dialog prompt"):
            yield Label(self.title_text, classes="dialog-question")
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")
            yield Label("Enter to accept, Escape to cancel", classes="dialog-hint")

    @property
    def path_input(self) -> Input:
        return self.query_one("#prompt-input", Input)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        self.dismiss(text or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
