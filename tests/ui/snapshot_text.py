"""What a failed snapshot changed, as text: CI keeps the log, not pytest-textual-snapshot's HTML report."""

from __future__ import annotations

import difflib
import html
import pickle
import re

_TEXT = re.compile(r'<text class="([^"]*)" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>')
_SHOT_ID = re.compile(r"terminal-\d+-")  # a shot's own prefix for its style classes; stored snapshots drop it


def svg_lines(svg: str) -> list[str]:
    """The terminal lines of a Textual SVG screenshot, each cell's style classes dropped."""
    rows: dict[float, list[tuple[float, str]]] = {}
    for match in _TEXT.finditer(svg):
        rows.setdefault(float(match.group(3)), []).append((float(match.group(2)), html.unescape(match.group(4))))
    return ["".join(text for _, text in sorted(cells)).replace("\xa0", " ").rstrip()
            for _, cells in sorted(rows.items())]


def svg_styles(svg: str) -> list[tuple[str, str, str, str]]:
    """Every text cell with its style class, in order: a change of colour alone shows here."""
    return [(_SHOT_ID.sub("terminal-", style), x, y, text) for style, x, y, text in _TEXT.findall(svg)]


def snapshot_difference(report_path) -> str:
    """The stored snapshot against the shot just taken, from the pickle pytest-textual-snapshot writes for its
    report: a unified diff of the lines, or the first cells whose style differs when the text is the same."""
    data = pickle.loads(report_path.read_bytes())
    expected, actual = data[1], data[2]
    if not expected or expected == "None":
        return "no stored snapshot to compare with"
    before, after = svg_lines(expected), svg_lines(actual)
    if before != after:
        return "\n".join(difflib.unified_diff(before, after, "stored snapshot", "this run", lineterm=""))
    styled = [(a, b) for a, b in zip(svg_styles(expected), svg_styles(actual)) if a != b]
    lines = ["the text is the same; these cells differ in style or place (class, x, y, text):"]
    lines += [f"  stored {a}  this run {b}" for a, b in styled[:20]]
    return "\n".join(lines)
