"""Monitor screen: live view of one training run."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class MonitorScreen(Screen):
    """Follow a live or past run: loss chart, stats, log, controls."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.run_path: Path | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("No run open", id="monitor-title")
        yield Footer()

    def show_run(self, run_path: Path) -> None:
        """Open the run at ``run_path`` (live or finished)."""
        self.run_path = Path(run_path)
        self.query_one("#monitor-title", Static).update(f"Run {self.run_path.name}")
