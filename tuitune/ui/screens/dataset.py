"""Dataset screen: open a training data file, inspect it, pick it for the run."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class DatasetScreen(Screen):
    """Inspect a dataset file and select it for the current run config."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Dataset", id="dataset-title")
        yield Footer()
