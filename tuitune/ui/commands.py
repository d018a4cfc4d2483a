"""The command palette's tuitune commands (ctrl+p): screens, training, configs, themes, runs."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Callable

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tuitune.ui.screens import SCREENS

Command = tuple[str, Callable[[], Any], str]


class TuituneCommands(Provider):
    """Commands that depend on the context: the runs on disk, the themes, whether a run is live."""

    _runs: list[Any] = []  # the runs on disk (tuitune.runs.RunInfo), read when the palette opens

    async def startup(self) -> None:
        from tuitune.runs import list_runs

        try:
            self._runs = await asyncio.to_thread(list_runs, self.app.runs_root)
        except OSError:
            self._runs = []

    def commands(self) -> list[Command]:
        app: Any = self.app
        found: list[Command] = [(f"Go to {entry.label} screen", partial(app.switch_mode, entry.mode),
                                 f"Key {entry.key}") for entry in SCREENS]
        found += [
            ("Start training", app.start_training, "Start a run with the current config and watch it"),
            ("New config", app.new_config, "Reset every field to its default"),
            ("Load config…", app.action_load_config, "Read a config TOML file"),
            ("Save config…", app.action_save_config, "Write the current config to a TOML file"),
            ("Help: keys", app.action_help, "The key map and terminal tips (F1)"),
        ]
        handle = app.live_handle
        if handle is not None and app.training_is_live():
            found += [
                ("Open the live run", partial(app.open_run, handle.run_dir.path), "Show the run training now"),
                ("Pause training", handle.pause, "Pause after the current step"),
                ("Resume training", handle.resume, "Continue a paused run"),
                ("Save a checkpoint now", handle.save_now, "Checkpoint without stopping"),
                ("Stop training", handle.stop, "Final checkpoint, then stop"),
            ]
        for name in sorted(app.available_themes, key=lambda n: (not n.startswith("tuitune"), n)):
            if name != app.theme:
                found.append((f"Theme: {name}", partial(setattr, app, "theme", name), "Switch the colour theme"))
        for run in self._runs[:30]:
            loss = f", loss {run.final_loss:.4f}" if run.final_loss is not None else ""
            found.append((f"Open run: {run.name}", partial(app.open_run, run.path), f"{run.status}{loss}"))
        return found

    async def discover(self) -> Hits:
        for name, callback, help_text in self.commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self.commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
