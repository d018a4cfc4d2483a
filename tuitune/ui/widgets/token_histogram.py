"""Token lengths of a dataset as vertical bars of block characters, with the max length marked."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from tuitune.ui.widgets.theme_colors import theme_colors

HISTOGRAM_BLOCKS = " ▁▂▃▄▅▆▇█"


class TokenHistogram(Widget):
    """Token lengths as vertical bars of block characters, with the max length marked."""

    DEFAULT_CSS = """
    TokenHistogram { height: 8; border: round $primary 50%; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lengths: list[int] = []
        self.limit: int | None = None
        self.border_title = "Token lengths"

    def set_lengths(self, lengths: list[int], limit: int | None) -> None:
        self.lengths = list(lengths)
        self.limit = limit
        self.refresh()

    def render(self) -> Text:
        colors = theme_colors(self.app)
        width, height = max(self.size.width, 8), max(self.size.height, 2)
        if not self.lengths:
            return Text("no token counts yet", style=colors["muted"])
        bars_height = height - 1
        top = max(self.lengths)
        bins = max(min(width, top), 1)
        counts = [0] * bins
        for length in self.lengths:
            counts[min(length * bins // (top + 1), bins - 1)] += 1
        peak = max(counts)
        limit_bin = None if self.limit is None else min(self.limit * bins // (top + 1), bins)
        text = Text(no_wrap=True, overflow="crop")
        for row in range(bars_height):
            level_floor = (bars_height - 1 - row) * 8
            for index, count in enumerate(counts):
                eighths = round(count / peak * bars_height * 8) if peak else 0
                if count and eighths == 0:
                    eighths = 1
                fill = min(max(eighths - level_floor, 0), 8)
                over = limit_bin is not None and index >= limit_bin
                text.append(HISTOGRAM_BLOCKS[fill], style=colors["no_fit"] if over else colors["loss"])
            text.append("\n")
        left, right = "0", f"{top} tokens"
        text.append(left + " " * max(bins - len(left) - len(right), 1) + right, style=colors["muted"])
        return text
