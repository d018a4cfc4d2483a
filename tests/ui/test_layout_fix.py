"""Two updates of a widget's content before its first layout request was passed on still size the widget for
the second content (tuitune.ui.layout_fix, against Textual 8.2.8's box-model cache)."""

from __future__ import annotations

import pytest
from textual.app import App
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Label, Static

from tuitune.ui import layout_fix

pytestmark = pytest.mark.anyio


class Boxes(App):
    CSS = "#text { height: auto; } #phase { width: auto; } #other { width: auto; }"

    def compose(self):
        with Vertical():
            yield Static("one line", id="text")
            yield Label("measuring tokens", id="phase")
            yield Label("x", id="other")


async def updated_twice(monkeypatch, fixed: bool) -> tuple[int, int]:
    """The text's and the phase label's sizes after: each updated, a layout run for another widget while
    their own requests wait (a busy machine), each updated again, then everything handled."""
    monkeypatch.setattr(Widget, "refresh", layout_fix._refresh if fixed else layout_fix._original_refresh)
    app = Boxes()
    async with app.run_test(size=(40, 12)) as pilot:
        text, phase = app.query_one("#text", Static), app.query_one("#phase", Label)
        await pilot.pause()
        waiting = [text, phase]
        for widget in waiting:  # their idle checks, which pass a layout request on, are held back
            monkeypatch.setattr(widget, "_check_refresh", lambda: None)
        text.update("1\n2")
        phase.update("reading")
        app.query_one("#other", Label).update("another widget")
        await pilot.pause(0.1)
        assert (text.size.height, phase.size.width) == (2, 7)  # laid out with the first contents
        text.update("1\n2\n3\n4")
        phase.update("done")
        for widget in waiting:
            monkeypatch.delattr(widget, "_check_refresh")
            widget.check_idle()
        await pilot.pause(0.2)
        return text.size.height, phase.size.width


async def test_the_second_content_is_measured(monkeypatch):
    assert await updated_twice(monkeypatch, fixed=True) == (4, 4)


async def test_textual_alone_still_reuses_the_first_box(monkeypatch):
    """Textual 8.2.8 without the fix: when this fails, Textual has fixed it and layout_fix can go."""
    assert await updated_twice(monkeypatch, fixed=False) == (2, 7)


def test_the_app_installs_the_fix():
    import tuitune.ui.app  # noqa: F401

    assert Widget.refresh is layout_fix._refresh
