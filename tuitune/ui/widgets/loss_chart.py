"""A line chart of training and eval loss over steps, drawn with braille dots.

Each terminal cell holds a 2 x 4 grid of braille dots, so a 60-column plot shows 120 step buckets.
Steps that fall into one dot column are averaged; consecutive columns are joined by a vertical run
of dots so the curve reads as a line. Colours come from the app's theme (theme_colors), so the
chart follows theme switches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.widget import Widget

from tuitune.ui.widgets.theme_colors import theme_colors

BRAILLE_BASE = 0x2800
# Bit of the dot at (column 0..1, row 0..3 from the top) of a braille cell.
DOT_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
AXIS_WIDTH = 9


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]] = field(default_factory=list)  # (step, value)


def format_value(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.001:
        return f"{value:.2e}"
    return f"{value:.4g}"


def column_means(points: list[tuple[float, float]], x_min: float, x_max: float, columns: int) -> dict[int, float]:
    """Average the values of the points that fall into each of `columns` dot columns."""
    sums: dict[int, list[float]] = {}
    span = x_max - x_min
    for x, y in points:
        col = 0 if span <= 0 else round((x - x_min) / span * (columns - 1))
        col = min(max(col, 0), columns - 1)
        acc = sums.setdefault(col, [0.0, 0])
        acc[0] += y
        acc[1] += 1
    return {col: total / count for col, (total, count) in sums.items()}


def plot_dots(points: list[tuple[float, float]], x_min: float, x_max: float, y_min: float, y_max: float,
              width: int, height: int) -> set[tuple[int, int]]:
    """Dots (dot column, dot row from the top) of the line through `points` on a width x height cell grid."""
    dot_cols, dot_rows = width * 2, height * 4
    means = column_means(points, x_min, x_max, dot_cols)
    span = y_max - y_min
    dots: set[tuple[int, int]] = set()
    previous: tuple[int, int] | None = None
    for col in sorted(means):
        frac = 0.5 if span <= 0 else (means[col] - y_min) / span
        row = dot_rows - 1 - round(min(max(frac, 0.0), 1.0) * (dot_rows - 1))
        if previous is not None:
            prev_col, prev_row = previous
            last_row = prev_row
            # Straight line across skipped columns, then a vertical run up to this column's row.
            for mid in range(prev_col + 1, col):
                last_row = round(prev_row + (row - prev_row) * (mid - prev_col) / (col - prev_col))
                dots.add((mid, last_row))
            low, high = sorted((last_row, row))
            for r in range(low, high + 1):
                dots.add((col, r))
        dots.add((col, row))
        previous = (col, row)
    return dots


def dots_to_cells(dots: set[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Braille bit masks per cell (cell column, cell row)."""
    cells: dict[tuple[int, int], int] = {}
    for col, row in dots:
        key = (col // 2, row // 4)
        cells[key] = cells.get(key, 0) | DOT_BITS[col % 2][row % 4]
    return cells


class LossChart(Widget):
    """Training loss and eval loss against the step; call `set_data` then it redraws once."""

    DEFAULT_CSS = """
    LossChart {
        height: 1fr;
        min-height: 6;
        border: round $primary 50%;
        border-title-color: $text;
        padding: 0 1;
    }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.train = Series("loss")
        self.eval = Series("eval loss")
        self.max_steps = 0
        self.border_title = "Loss"

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.refresh())

    # data
    def clear(self) -> None:
        self.train.points.clear()
        self.eval.points.clear()
        self.max_steps = 0
        self.refresh()

    def add_points(self, train: list[tuple[float, float]], eval_: list[tuple[float, float]],
                   max_steps: int | None = None) -> None:
        """Append a batch of points and redraw once."""
        self.train.points.extend(train)
        self.eval.points.extend(eval_)
        if max_steps:
            self.max_steps = int(max_steps)
        if train or eval_ or max_steps:
            self.refresh()

    # drawing
    def _bounds(self) -> tuple[float, float, float, float] | None:
        points = self.train.points + self.eval.points
        if not points:
            return None
        xs = [x for x, _ in points]
        ys = [y for _, y in points]
        x_min = min(xs)
        x_max = max(max(xs), float(self.max_steps or 0))
        y_min, y_max = min(ys), max(ys)
        pad = (y_max - y_min) * 0.05 or max(abs(y_max) * 0.05, 0.01)
        return x_min, x_max, y_min - pad, y_max + pad

    def render(self) -> Text:
        colors = theme_colors(self.app)
        train_color, eval_color, muted = colors["loss"], colors["eval"], colors["muted"]
        width, height = self.size.width, self.size.height
        text = Text(no_wrap=True, overflow="crop")
        legend = Text()
        legend.append("━━ ", style=train_color)
        last_train = self.train.points[-1][1] if self.train.points else None
        legend.append(f"loss {format_value(last_train) if last_train is not None else '-'}")
        legend.append("   ")
        legend.append("━━ ", style=eval_color)
        last_eval = self.eval.points[-1][1] if self.eval.points else None
        legend.append(f"eval loss {format_value(last_eval) if last_eval is not None else '-'}")
        text.append_text(legend)
        plot_width = max(width - AXIS_WIDTH, 1)
        plot_height = max(height - 2, 1)
        bounds = self._bounds()
        if bounds is None or height < 3:
            text.append("\n")
            text.append("waiting for the first step…", style=muted)
            return text
        x_min, x_max, y_min, y_max = bounds
        train_cells = dots_to_cells(plot_dots(self.train.points, x_min, x_max, y_min, y_max, plot_width, plot_height))
        eval_cells = dots_to_cells(plot_dots(self.eval.points, x_min, x_max, y_min, y_max, plot_width, plot_height))
        for row in range(plot_height):
            text.append("\n")
            if row == 0:
                label = format_value(y_max)
            elif row == plot_height - 1:
                label = format_value(y_min)
            elif row == plot_height // 2 and plot_height >= 5:
                label = format_value((y_max + y_min) / 2)
            else:
                label = ""
            text.append(f"{label:>{AXIS_WIDTH - 2}} {'┤' if label else '│'}", style=muted)
            for col in range(plot_width):
                bits_eval = eval_cells.get((col, row), 0)
                bits_train = train_cells.get((col, row), 0)
                if bits_eval:
                    text.append(chr(BRAILLE_BASE | bits_eval | bits_train), style=eval_color)
                elif bits_train:
                    text.append(chr(BRAILLE_BASE | bits_train), style=train_color)
                else:
                    text.append(" ")
        text.append("\n")
        left = f"step {int(x_min)}"
        right = f"{int(x_max)}"
        axis = " " * (AXIS_WIDTH - 1) + "└" + left
        gap = max(width - len(axis) - len(right), 1)
        text.append(axis + " " * gap + right, style=muted)
        return text
