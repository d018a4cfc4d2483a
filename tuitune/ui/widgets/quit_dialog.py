"""Asked on quit while a run is live: stop it (with a final checkpoint) or leave it training."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal
from textual.screen import ModalScreen
from textual.widgets import Button, Label

STOP, KEEP, CANCEL = "stop", "keep", "cancel"


class QuitDialog(ModalScreen[str]):
    """Dismisses with "stop", "keep" or "cancel"."""

    BINDINGS = [
        Binding("escape", "choose('cancel')", "Cancel", id="quit.cancel"),
        Binding("s", "choose('stop')", "Stop run", id="quit.stop"),
        Binding("k", "choose('keep')", "Keep running", id="quit.keep"),
    ]

    def __init__(self, run_name: str) -> None:
        super().__init__(classes="dialog-screen")
        self.run_name = run_name

    @property
    def question_label(self) -> Label:
        return self.query_one(".dialog-question", Label)

    def compose(self) -> ComposeResult:
        with Grid(classes="dialog"):
            yield Label(
                f"Run {self.run_name} is still training.\n\n"
                "Stop it (a final checkpoint is saved, it can be resumed later), or keep it training "
                "in the background (reopen it from the Runs screen next time).",
                classes="dialog-question", markup=False,  # the run's name is the user's text
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stop & save", variant="error", id=STOP)
                yield Button("Keep running", variant="primary", id=KEEP)
                yield Button("Cancel", id=CANCEL)
            yield Label("s stop · k keep running · Esc cancel", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(f"#{KEEP}", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
