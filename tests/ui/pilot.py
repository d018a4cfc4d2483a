"""Driving the app in tests: one way to build it, to wait on it and to read what a widget shows."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.text import Text
from textual.content import Content
from textual.pilot import Pilot
from textual.widget import Widget

from tests.ui.fakes import FakeChatEngines, FakeExports, FakeTrainer
from tuitune.hardware import FakeGpuSource
from tuitune.ui.app import TuituneApp

SIZE = (120, 40)


def make_app(tmp_path: Path, **kwargs: Any) -> TuituneApp:
    """The app wired for a test: no GPU unless `gpu_source` is given, a FakeTrainer as
    `app.spawn_trainer`, fake chat engines and exports, runs under tmp_path (user folders are isolated
    by tests/ui/conftest.py)."""
    kwargs.setdefault("gpu_source", FakeGpuSource.none())
    kwargs.setdefault("runs_root", tmp_path / "runs")
    kwargs.setdefault("spawn_trainer", FakeTrainer())
    kwargs.setdefault("open_chat_engine", FakeChatEngines())
    kwargs.setdefault("start_export", FakeExports())
    return TuituneApp(**kwargs)


async def wait_until(pilot: Pilot, predicate: Callable[[], Any], timeout: float = 30.0, what: str = "") -> None:
    """Let the app run until `predicate()` holds; generous by default for loaded CI machines."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or 'condition'} not met within {timeout} s")
        await pilot.pause(0.05)


_WIDGET_FLAGS = ("_layout_required", "_repaint_required", "_recompose_required", "_refresh_styles_required",
                 "_scroll_required")


def _pending(app) -> bool:
    """Whether Textual still owes the screen work: a layout, a repaint or a recompose that a widget asked for
    and has not yet passed to its screen, a message not yet handled, or DataTable's idle-time sizing of new
    rows (Textual's own flags; there is no public way to ask)."""
    from textual.widgets import DataTable

    screen = app.screen
    if screen._dirty_widgets or any(getattr(screen, flag) for flag in _WIDGET_FLAGS):
        return True
    widgets = list(screen.walk_children())
    if any(getattr(widget, flag, False) for widget in widgets for flag in _WIDGET_FLAGS):
        return True
    if any(not node._message_queue.empty() for node in (app, screen, *widgets)):
        return True
    return any(table._require_update_dimensions for table in screen.query(DataTable))


async def settled(pilot: Pilot, timeout: float = 30.0) -> None:
    """Before a snapshot: wait until the screen has done the layout and painting it owes, seen twice a pause
    apart (a handled message can ask for more). A loaded machine delays Textual's update timer past any fixed
    pause, and the shot would show a stale layout."""
    for _ in range(2):
        await wait_until(pilot, lambda: not _pending(pilot.app), timeout, "the screen's pending layout and paint")
        await pilot.pause(0.05)


def text_of(target: Widget | Any) -> str:
    """What a widget shows, or what a Rich renderable prints, as plain text."""
    if isinstance(target, Widget):
        rendered = target.render()
        if isinstance(rendered, (Content, Text)):
            return rendered.plain
        target = getattr(target, "content", rendered)  # a Static holding a Rich renderable
    if isinstance(target, (Content, Text)):
        return target.plain
    if isinstance(target, str):
        return Text.from_markup(target).plain
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(target)
    return console.export_text()
