"""Hyperparameters screen: a validated form over tuitune.config.FIELDS."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class HyperparamsScreen(Screen):
    """Edit the run config and start training."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Hyperparameters", id="hyperparams-title")
        yield Footer()
