"""The Dataset screen's offer when a file cannot be read as it is: salvage the complete records of a
JSON file that breaks off part-way, or map columns with other names to the ones tuitune reads.

Hidden until offered. It only shows and asks; the screen decides what a press does (it hears
`DataRepair.Salvage` and `DataRepair.Map`).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Static

COLUMNS_SHOWN = 30  # the columns listed in the offer; a wider table says how many more


class DataRepair(Vertical):
    """One offer at a time: `offer_salvage(records)` or `offer_mapping(columns, suggestion)`."""

    class Salvage(Message):
        """Use the complete records before the break."""

    class Map(Message):
        """Read the file again with this column mapping (`instruction=question,output=answer`)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def compose(self) -> ComposeResult:
        yield Static("", id="repair-text", markup=False)
        with Horizontal(id="repair-salvage-row"):
            yield Button("Salvage", id="repair-salvage", variant="warning",
                         tooltip="Use the complete records before the break (data.salvage)")
        with Horizontal(id="repair-map-row"):
            yield Input(placeholder="instruction=question,output=answer", id="repair-map-input")
            yield Button("Map columns", id="repair-map", variant="warning",
                         tooltip="Read the columns under these names (data.columns)")

    @property
    def text(self) -> Static:
        return self.query_one("#repair-text", Static)

    @property
    def salvage_button(self) -> Button:
        return self.query_one("#repair-salvage", Button)

    @property
    def map_input(self) -> Input:
        return self.query_one("#repair-map-input", Input)

    def on_mount(self) -> None:
        self.border_title = "Read it anyway"
        self.hide()

    def hide(self) -> None:
        self.display = False

    def offer_salvage(self, records: int) -> None:
        noun = "record" if records == 1 else "records"
        self.text.update(f"The file breaks off after {records:,} complete {noun}. Salvage uses "
                         "those and leaves out the rest (the run's config keeps data.salvage).")
        self.salvage_button.label = f"Salvage {records:,} {noun}"
        self.query_one("#repair-salvage-row").display = True
        self.query_one("#repair-map-row").display = False
        self.display = True

    def offer_mapping(self, columns: list[str], suggestion: str) -> None:
        seen = ", ".join(columns[:COLUMNS_SHOWN]) or "none"
        if len(columns) > COLUMNS_SHOWN:
            seen += f" (and {len(columns) - COLUMNS_SHOWN} more)"
        guess = ("A guess from the names is filled in; check it." if suggestion
                 else "Name the columns, e.g. instruction=question,output=answer.")
        self.text.update(f"Columns seen: {seen}.\nMap them to names tuitune reads (instruction, "
                         f"input, output, messages, text, prompt, chosen, rejected; role, content "
                         f"inside turns). {guess}")
        self.map_input.value = suggestion
        self.query_one("#repair-salvage-row").display = False
        self.query_one("#repair-map-row").display = True
        self.display = True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "repair-salvage":
            self.post_message(self.Salvage())
        elif event.button.id == "repair-map":
            self.post_message(self.Map(self.map_input.value.strip()))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Map(event.value.strip()))
