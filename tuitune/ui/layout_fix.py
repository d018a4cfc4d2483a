"""A fix for Textual 8.2.8 (the pinned version): a widget re-measured after every change of content.

Textual caches each widget's box model under the widget's `_layout_updates` counter, and
`Widget.refresh(layout=True)` advances that counter only when no layout is already pending for the widget.
A second update before the widget has passed its first request on (its idle check) keeps the counter, so
when a layout ran for other widgets in between, the cached box of the first content is reused for good.
Seen on a loaded 2-core machine: the dataset summary showing 5 of its 7 lines, the phase label
"done" kept the width of "measuring tokens". The fix advances the counter on every layout request; the
cost is one box model measured again, where one was wrongly reused."""

from __future__ import annotations

from textual.widget import Widget

_original_refresh = Widget.refresh


def _refresh(self: Widget, *regions, repaint: bool = True, layout: bool = False, recompose: bool = False) -> Widget:
    if layout and self._layout_required:
        self._layout_updates += 1
    return _original_refresh(self, *regions, repaint=repaint, layout=layout, recompose=recompose)


def remeasure_on_every_layout_request() -> None:
    """Install the fix (once; the UI's app module does it at import)."""
    Widget.refresh = _refresh
