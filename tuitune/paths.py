"""Where tuitune keeps its files: XDG data (runs), cache (converted models) and config (settings)."""

from __future__ import annotations

import os
from pathlib import Path

APP = "tuitune"


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / APP


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache") / APP


def converted_models_dir() -> Path:
    """Where GGUF files converted to Hugging Face folders are kept (model_source writes, catalog lists)."""
    return cache_dir() / "models"


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / APP


def runs_root(override: str | os.PathLike | None = None) -> Path:
    """The folder holding run directories: `--output`, then $TUITUNE_RUNS, then the XDG data dir."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("TUITUNE_RUNS")
    if env:
        return Path(env).expanduser()
    return data_dir() / "runs"


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a kill at any moment leaves the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
