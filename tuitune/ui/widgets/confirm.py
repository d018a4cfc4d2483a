"""A yes/no modal: `push_screen(ConfirmModal(question), callback)` calls back with True or False."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ConfirmModal(ModalScreen[bool]):
    """Asks one question; Escape or "Cancel" answers False."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="confirm.cancel"),
        Binding("y", "confirm", "Yes", id="confirm.yes"),
        Binding("n", "cancel", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, *, confirm_label: str = "Delete", danger: bool = True) -> None:
        super().__init__(classes="dialog-screen")
        self.question = question
        self.confirm_label = confirm_label
        self.danger = danger

    @property
    def question_label(self) -> Label:
        return self.query_one(".dialog-question", Label)

    def compose(self) -> ComposeResult:
        with Grid(classes="dialog"):
            yield Label(self.question, classes="dialog-question", markup=False)  # names and paths, not markup
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.confirm_label, variant="error" if self.danger else "primary", id="confirm")
                yield Button("Cancel", id="cancel")
            yield Label("y yes · n or Esc no", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
