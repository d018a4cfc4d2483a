"""Path completion for text fields: the last path component completed from the file system."""

from __future__ import annotations

import os

from textual.suggester import Suggester


class PathSuggester(Suggester):
    """Completes the last path component from the file system (folders get a trailing slash)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        expanded = os.path.expanduser(value)
        folder, prefix = os.path.split(expanded)
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:
            return None
        for name in names:
            if name.startswith(prefix) and name != prefix and (prefix.startswith(".") or not name.startswith(".")):
                full = os.path.join(folder, name)
                completed = value[: len(value) - len(prefix)] + name
                return completed + ("/" if os.path.isdir(full) else "")
        return None
