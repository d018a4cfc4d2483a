"""The braille loss chart: dot placement, averaging per column, line joining, and theme colours."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from tuitune.ui.widgets.loss_chart import BRAILLE_BASE, LossChart, column_means, dots_to_cells, plot_dots
from tuitune.ui.widgets.theme_colors import theme_colors

pytestmark = pytest.mark.anyio


def test_points_in_one_dot_column_are_averaged():
    means = column_means([(0, 1.0), (1, 3.0), (10, 5.0)], 0, 10, 3)
    assert means == {0: 2.0, 2: 5.0}  # steps 0 and 1 share column 0; step 10 is the last column


def test_line_runs_from_top_left_to_bottom_right_and_is_connected():
    # One cell wide and one high: 2 x 4 dots. A falling line from the top-left to the bottom-right.
    dots = plot_dots([(0, 4.0), (1, 0.0)], 0, 1, 0.0, 4.0, 1, 1)
    assert (0, 0) in dots and (1, 3) in dots
    assert {(1, 0), (1, 1), (1, 2), (1, 3)} <= dots, "the vertical run joins the two points"
    cells = dots_to_cells(dots)
    assert list(cells) == [(0, 0)]
    assert chr(BRAILLE_BASE | cells[(0, 0)]) == "⢹"  # left-top dot plus the whole right column


def test_gaps_between_sparse_points_are_filled():
    dots = plot_dots([(0, 0.0), (100, 1.0)], 0, 100, 0.0, 1.0, 10, 2)
    columns = {col for col, _ in dots}
    assert columns == set(range(20)), "every dot column between the two points has a dot"


class ChartApp(App):
    def compose(self) -> ComposeResult:
        yield LossChart()


async def test_chart_draws_in_the_theme_colours_and_follows_theme_changes():
    app = ChartApp()
    async with app.run_test(size=(60, 12)) as pilot:
        chart = app.query_one(LossChart)
        assert "waiting for the first step" in chart.render().plain
        chart.add_points([(s, 3.0 - 0.1 * s) for s in range(1, 21)], [(10, 2.5), (20, 1.5)], max_steps=40)
        await pilot.pause()
        for theme in ("textual-dark", "textual-light"):
            app.theme = theme
            await pilot.pause()
            colors = theme_colors(app)
            text = chart.render()
            styles = {str(span.style) for span in text.spans
                      if any(BRAILLE_BASE <= ord(c) <= BRAILLE_BASE + 0xFF for c in text.plain[span.start:span.end])}
            assert colors["loss"] in styles and colors["eval"] in styles, (theme, styles)
            assert "loss 1" in text.plain and "eval loss 1.5" in text.plain
            assert text.plain.rstrip().endswith("40")  # the x axis runs to max_steps
