"""Themes as TOML files: tuitune's own (in this package) and the user's (`<config dir>/themes/*.toml`).

A theme file holds the fields of `textual.theme.Theme` (name, primary, secondary, accent, warning,
error, success, foreground, background, surface, panel, boost, dark, luminosity_spread, text_alpha)
and an optional `[variables]` table. Only `name` and `primary` are required.
"""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.theme import Theme

from tuitune.errors import TuituneError

COLOR_FIELDS = ("primary", "secondary", "accent", "warning", "error", "success",
                "foreground", "background", "surface", "panel", "boost")
NUMBER_FIELDS = ("luminosity_spread", "text_alpha")
KNOWN_FIELDS = {"name", "dark", "variables", *COLOR_FIELDS, *NUMBER_FIELDS}


def theme_from_dict(data: dict[str, Any], source: str) -> Theme:
    """Build a Theme, reporting every bad field of `source` at once."""
    problems: list[str] = []
    unknown = sorted(set(data) - KNOWN_FIELDS)
    if unknown:
        problems.append(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(KNOWN_FIELDS))})")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append("name must be a non-empty string")
    if "primary" not in data:
        problems.append("primary is required (a colour such as \"#5FB3B3\")")
    for key in COLOR_FIELDS:
        if key in data:
            value = data[key]
            try:
                if not isinstance(value, str):
                    raise ColorParseError("not text")
                Color.parse(value)
            except ColorParseError:
                problems.append(f"{key} = {value!r} is not a colour (use #rrggbb)")
    for key in NUMBER_FIELDS:
        if key in data and not isinstance(data[key], (int, float)):
            problems.append(f"{key} must be a number")
    if "dark" in data and not isinstance(data["dark"], bool):
        problems.append("dark must be true or false")
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        problems.append("[variables] must be a table of text values")
        variables = {}
    if problems:
        raise TuituneError(f"Theme file {source} is not usable: " + "; ".join(problems)
                           + ". Compare it with tuitune's own themes/tuitune-dark.toml.")
    fields = {k: data[k] for k in (*COLOR_FIELDS, *NUMBER_FIELDS) if k in data}
    return Theme(name=name.strip(), dark=data.get("dark", True), variables=dict(variables), **fields)


def load_theme_file(path: Path) -> Theme:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise TuituneError(f"Theme file {path} cannot be read ({exc.strerror}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise TuituneError(f"Theme file {path} is not valid TOML: {exc}.") from None
    return theme_from_dict(data, str(path))


def bundled_themes() -> list[Theme]:
    """tuitune's own themes, shipped as package data of `tuitune.themes`."""
    found = []
    for entry in sorted(files("tuitune.themes").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            found.append(theme_from_dict(tomllib.loads(entry.read_text(encoding="utf-8")),
                                         f"tuitune.themes/{entry.name}"))
    return found


def user_themes(folder: Path) -> tuple[list[Theme], list[str]]:
    """Themes in `folder` (sorted by file name) and one message per file that could not be used."""
    themes: list[Theme] = []
    errors: list[str] = []
    if not folder.is_dir():
        return themes, errors
    for path in sorted(folder.glob("*.toml")):
        try:
            themes.append(load_theme_file(path))
        except TuituneError as exc:
            errors.append(str(exc))
    return themes, errors
