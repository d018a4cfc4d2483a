"""A failed snapshot reports what changed as text lines, or as the cells whose style changed."""

from __future__ import annotations

import pickle
from pathlib import Path

from tests.ui.snapshot_text import snapshot_difference, svg_lines

STORED = Path(__file__).parent / "__snapshots__" / "test_dataset" / "test_dataset_snapshot.svg"


def report(tmp_path: Path, expected: str, actual: str) -> Path:
    path = tmp_path / "report.pickle"
    path.write_bytes(pickle.dumps((False, expected, actual)))
    return path


def test_the_lines_read_as_the_terminal_showed_them():
    lines = svg_lines(STORED.read_text())
    assert len(lines) == 40
    assert any(line.startswith("│ 12  What is 12 plus 12?") for line in lines)
    assert any("Use this dataset  Use max length 128" in line for line in lines)


def test_a_changed_label_shows_as_a_line_diff(tmp_path):
    svg = STORED.read_text()
    changed = svg.replace("Use&#160;max&#160;length&#160;128", "Use&#160;max&#160;length&#160;256")
    assert changed != svg
    diff = snapshot_difference(report(tmp_path, svg, changed))
    assert "-" in diff and "Use max length 128" in diff and "+" in diff and "Use max length 256" in diff


def test_a_changed_colour_alone_names_the_cells(tmp_path):
    svg = STORED.read_text()
    changed = svg.replace('<text class="terminal-r2"', '<text class="other-style"', 1)
    assert changed != svg
    diff = snapshot_difference(report(tmp_path, svg, changed))
    assert diff.startswith("the text is the same") and "other-style" in diff


def test_a_shots_own_style_prefix_is_not_a_difference(tmp_path):
    svg = STORED.read_text()
    shot = svg.replace('class="terminal-r', 'class="terminal-4237961740-r')
    moved = shot.replace('x="1403" y="117.6"', 'x="1256.6" y="117.6"')
    assert shot != svg and moved != shot
    assert snapshot_difference(report(tmp_path, svg, shot)).splitlines() == [
        "the text is the same; these cells differ in style or place (class, x, y, text):"]
    assert "'1403', '117.6', 'done'" in snapshot_difference(report(tmp_path, svg, moved))
