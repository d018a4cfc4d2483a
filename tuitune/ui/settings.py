"""The TUI's own settings: `<config dir>/settings.toml` (theme, key remaps), written atomically.

    theme = "tuitune-dark"

    [keymap]            # binding id = keys (comma separated); ids are listed on the F1 help screen
    "screen.gpu" = "1,f2"
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tuitune.errors import TuituneError
from tuitune.paths import atomic_write_text, config_dir

SETTINGS_FILE = "settings.toml"


@dataclass
class Settings:
    theme: str | None = None
    keymap: dict[str, str] = field(default_factory=dict)


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def load_settings(path: Path | None = None) -> Settings:
    """Read the settings; a missing file gives defaults, a broken one raises a TuituneError."""
    path = path or settings_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Settings()
    except OSError as exc:
        raise TuituneError(f"Settings file {path} cannot be read ({exc.strerror}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise TuituneError(f"Settings file {path} is not valid TOML ({exc}); fix or delete it.") from None
    problems = []
    theme = data.get("theme")
    if theme is not None and not isinstance(theme, str):
        problems.append("theme must be a theme name in quotes")
        theme = None
    keymap = data.get("keymap", {})
    if not isinstance(keymap, dict) or not all(isinstance(v, str) for v in keymap.values()):
        problems.append("[keymap] must map binding ids to key names, e.g. \"screen.gpu\" = \"1,f2\"")
        keymap = {}
    unknown = sorted(set(data) - {"theme", "keymap"})
    if unknown:
        problems.append(f"unknown setting(s) {', '.join(unknown)} (known: theme, keymap)")
    if problems:
        raise TuituneError(f"Settings file {path}: " + "; ".join(problems) + ". Fix or delete the file.")
    return Settings(theme=theme, keymap=dict(keymap))


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def save_settings(settings: Settings, path: Path | None = None) -> None:
    path = path or settings_path()
    lines = ["# tuitune TUI settings (written by the app; safe to edit)"]
    if settings.theme:
        lines.append(f"theme = {_quote(settings.theme)}")
    if settings.keymap:
        lines += ["", "[keymap]"]
        lines += [f"{_quote(key)} = {_quote(value)}" for key, value in sorted(settings.keymap.items())]
    atomic_write_text(path, "\n".join(lines) + "\n")
