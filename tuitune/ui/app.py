"""The tuitune terminal app: the registry's screens as Textual MODES, themes, the palette, the quit guard.

Shared state that every screen relies on (the contract between the screens):

    app.config            tuitune.config.Config   the run being prepared; forms edit it in place
    app.config_path       Path | None             where it was last loaded from / saved to
    app.config_changed_signal  Signal[Config]     published when the config is replaced or edited
                                                  outside a form (new, load, model picked)
    app.gpu_source        tuitune.hardware.GpuSource   `.snapshot()` -> HardwareSnapshot
    app.runs_root         Path | None             runs root (None: $TUITUNE_RUNS or the XDG data dir)
    app.spawn_trainer     tuitune.trainer_handle.Spawn  starts a trainer on a prepared run directory;
                          default tuitune.trainer.launcher.spawn (a child process); tests give a fake
    app.live_handle       TrainerHandle | None    the run this UI started and still follows
    app.training_is_live()  whether live_handle's trainer still runs
    app.open_run(path)    switch to the monitor and show that run (MonitorScreen.show_run)
    app.open_chat(ref), app.open_export(ref)
                          switch to the Chat / Export screen with that run (or adapter, model, .gguf)
    app.open_chat_engine  tuitune.chat.open_engine: loads a ChatTarget (called from a thread worker);
                          tests give a fake
    app.start_export      tuitune.export.process.start_export: runs an export in a child process;
                          tests give a fake
    app.start_training(config=None) -> TrainerHandle | None
                          launcher.start for the config (default app.config), then the monitor;
                          None (with a toast saying why) when it cannot
    app.resume_run(path) -> TrainerHandle | None
                          launcher.resume: that run continues from its last complete checkpoint
    app.remember_rows(path, rows), app.known_rows(path)
                          usable rows of a dataset as the Dataset screen counted them (the form
                          plans the run's steps with them)
    app.config_edited()   publish config_changed_signal after editing app.config in place
    app.set_config(config, path=None), app.load_config_file(path), app.save_config_file(path),
    app.new_config()      replace / read / write the config (errors become toasts)
    app.report(error, title)   show an exception as an error toast (never a traceback)

Keys: each screen's function key (and its digit outside text fields; tuitune.ui.screens.SCREENS) switch
screens, F1 help, ctrl+p palette, ctrl+q quit; binding ids are remappable in
<config dir>/settings.toml [keymap].

The UI never imports torch/transformers/... at import time; the trainer is a spawned child process
(tuitune.trainer.child). A "worker" is always a Textual worker: a background task of the UI (a thread).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

from textual.app import App
from textual.binding import Binding
from textual.signal import Signal
from textual.worker import Worker, WorkerState

from tuitune.chat import open_engine
from tuitune.config import Config, load_config, save_config
from tuitune.export import process as export_process
from tuitune.errors import TuituneError
from tuitune.hardware import GpuSource, default_source
from tuitune.runs import RunDir
from tuitune.trainer import launcher
from tuitune.trainer_handle import Spawn, TrainerHandle
from tuitune.ui.commands import TuituneCommands
from tuitune.ui.layout_fix import remeasure_on_every_layout_request
from tuitune.ui.screens import SCREENS
from tuitune.ui.screens.help import HelpScreen

DEFAULT_THEME = "tuitune-dark"
remeasure_on_every_layout_request()


def _mode_bindings() -> list[Binding]:
    """Each screen's function key (shown in the footer, priority so it works inside text fields) and
    its digit as an alias.

    F-keys reach the app even when a text field has focus (digits would go into the field), and they
    pass through tmux and SSH (htop and mc rely on them); neither collides with a tmux prefix."""
    bindings = [Binding(entry.fkey, f"switch_mode('{entry.mode}')", entry.label, priority=True,
                        id=f"screen.{entry.mode}.fkey",
                        tooltip=f"Show the {entry.label} screen (also key {entry.key})") for entry in SCREENS]
    bindings += [Binding(entry.key, f"switch_mode('{entry.mode}')", entry.label, show=False,
                         id=f"screen.{entry.mode}", tooltip=f"Show the {entry.label} screen") for entry in SCREENS]
    return bindings


class TuituneApp(App[int]):
    """Fine-tune LLMs from the terminal."""

    TITLE = "tuitune"
    CSS_PATH = "app.tcss"
    MODES = {entry.mode: entry.screen for entry in SCREENS}
    DEFAULT_MODE = SCREENS[0].mode
    COMMANDS = App.COMMANDS | {TuituneCommands}

    BINDINGS = [
        *_mode_bindings(),
        Binding("f1", "help", "Help", id="app.help", tooltip="Key map and terminal tips"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True, show=False,
                tooltip="Quit (asks first when a run is training)"),
    ]

    def __init__(
        self,
        *,
        config: Config | None = None,
        gpu_source: GpuSource | None = None,
        runs_root: str | os.PathLike | None = None,
        spawn_trainer: Spawn | None = None,
        open_chat_engine: Any = None,
        start_export: Any = None,
        theme: str | None = None,
        settings_path: Path | None = None,
        remember_theme: bool = True,
    ) -> None:
        from tuitune.themes.loader import bundled_themes, user_themes
        from tuitune.paths import config_dir
        from tuitune.ui.settings import Settings, load_settings

        super().__init__()
        self.config: Config = config or Config()
        self.config_path: Path | None = None
        self.config_changed_signal: Signal[Config] = Signal(self, "config-changed")
        # NVML, or a fake when $TUITUNE_FAKE_GPU is h200, none or unsupported (demos and tests)
        self.gpu_source: GpuSource = gpu_source if gpu_source is not None else default_source()
        self.runs_root: Path | None = Path(runs_root).expanduser() if runs_root else None
        self.spawn_trainer: Spawn = spawn_trainer or launcher.spawn
        self.open_chat_engine = open_chat_engine or open_engine
        self.start_export = start_export or export_process.start_export
        self.live_handle: TrainerHandle | None = None
        self._row_counts: dict[str, int] = {}
        self._settings_path = settings_path
        self._remember_theme = remember_theme
        self.startup_messages: list[str] = []

        for bundled in bundled_themes():
            self.register_theme(bundled)
        themes, errors = user_themes(config_dir() / "themes")
        for user_theme in themes:
            self.register_theme(user_theme)
        self.startup_messages += errors
        try:
            self.settings = load_settings(settings_path)
        except TuituneError as exc:
            self.startup_messages.append(str(exc))
            self.settings = Settings()
        chosen = theme or self.settings.theme or DEFAULT_THEME
        if chosen not in self.available_themes:
            if theme:  # asked for on the command line: refuse rather than guess
                raise TuituneError(f"Theme {theme!r} does not exist. "
                                   f"Themes: {', '.join(sorted(self.available_themes))}.")
            self.startup_messages.append(f"Theme {chosen!r} from the settings is not available; using {DEFAULT_THEME}.")
            chosen = DEFAULT_THEME
        self.theme = chosen
        self._shown_theme = chosen  # a --theme choice is for this session; palette switches are saved

    # ----------------------------------------------------------------- startup / resilience
    def on_mount(self) -> None:
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)
        for message in self.startup_messages:
            self.notify(message, severity="warning", timeout=10)
        self.theme_changed_signal.subscribe(self, self._on_theme_changed)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A failing worker becomes a toast; the app keeps running."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            text = str(error) if isinstance(error, TuituneError) else f"{type(error).__name__}: {error}"
            self.notify(text, title=f"{event.worker.name or 'background task'} failed", severity="error",
                        timeout=10)

    def notify(self, message: str, *, title: str = "", severity: Any = "information", timeout: float | None = None,
               markup: bool = True) -> None:
        """Every toast is plain text: messages carry file paths, rows and model names, whose `[INST]` or
        `[/x]` Textual's markup would eat or fail on. (`markup` is accepted and ignored, as screens'
        notify passes it.)"""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def report(self, error: BaseException, title: str = "Error") -> None:
        """Show an error as a toast (TuituneError: its message; anything else: its type too)."""
        text = str(error) if isinstance(error, TuituneError) else f"{type(error).__name__}: {error}"
        self.notify(text, title=title, severity="error", timeout=10)

    # ----------------------------------------------------------------- themes and settings
    def _on_theme_changed(self, theme: Any) -> None:
        if theme.name == self._shown_theme:
            return
        self._shown_theme = theme.name
        if not self._remember_theme or theme.name == self.settings.theme:
            return
        from tuitune.ui.settings import save_settings

        self.settings.theme = theme.name
        try:
            save_settings(self.settings, self._settings_path)
        except OSError as exc:
            self.notify(f"Could not remember the theme ({exc}).", severity="warning")

    # ----------------------------------------------------------------- config
    def set_config(self, config: Config, path: Path | None = None) -> None:
        self.config = config
        self.config_path = path
        self.config_changed_signal.publish(config)

    def config_edited(self) -> None:
        """Call after changing a field of app.config outside a form (e.g. the model picked)."""
        self.config_changed_signal.publish(self.config)

    def load_config_file(self, path: str | os.PathLike) -> bool:
        path = Path(path).expanduser()
        try:
            config = load_config(path)
        except TuituneError as exc:
            self.report(exc, "Config not loaded")
            return False
        self.set_config(config, path)
        self.notify(f"Loaded {path}", title="Config")
        return True

    def save_config_file(self, path: str | os.PathLike) -> bool:
        path = Path(path).expanduser()
        try:
            save_config(self.config, path)
        except OSError as exc:
            self.report(TuituneError(f"Cannot write {path} ({exc.strerror or exc})."), "Config not saved")
            return False
        self.config_path = path
        self.notify(f"Saved {path}", title="Config")
        return True

    def new_config(self) -> None:
        self.set_config(Config(), None)
        self.notify("Config reset to the defaults", title="Config")

    # ----------------------------------------------------------------- dataset row counts
    def remember_rows(self, path: str, rows: int) -> None:
        """The usable rows of the dataset at `path`, as the Dataset screen counted them."""
        self._row_counts[_path_key(path)] = rows

    def known_rows(self, path: str) -> int | None:
        """Usable rows of the dataset at `path` if this session counted them (the form plans steps)."""
        return self._row_counts.get(_path_key(path))

    # ----------------------------------------------------------------- runs
    def training_is_live(self) -> bool:
        """Whether the run this UI started is still training."""
        return self.live_handle is not None and self.live_handle.is_alive()

    def open_run(self, run_path: str | os.PathLike) -> None:
        """Switch to the monitor and show the run at `run_path` (live or finished)."""
        run_path = Path(run_path)
        self._open_in("monitor", lambda screen: screen.show_run(run_path))

    def open_chat(self, ref: str | os.PathLike) -> None:
        """Switch to the Chat screen and load `ref` (a run, adapter folder, model or .gguf file)."""
        self._open_in("chat", lambda screen: screen.open_target(str(ref)))

    def open_export(self, ref: str | os.PathLike) -> None:
        """Switch to the Export screen with `ref` (a run or adapter folder) as what to export."""
        self._open_in("export", lambda screen: screen.set_target(str(ref)))

    def _open_in(self, mode: str, show: Callable[[Any], None]) -> None:
        """Switch to `mode`, then call `show(screen)` once that screen is mounted."""
        await_mount = self.switch_mode(mode)
        screen = self.screen_stack[0]

        async def shown() -> None:
            await await_mount
            show(screen)

        self.run_worker(shown(), name=f"open in {mode}", group=f"open-{mode}", exit_on_error=False)

    def start_training(self, config: Config | None = None) -> TrainerHandle | None:
        """Start a run of the config (default app.config) and open the monitor; the handle or None."""
        if self.training_is_live():
            self.notify("A run is already training; stop it first (Monitor screen) or wait for it.",
                        title="Not started", severity="warning")
            return None
        try:
            handle = launcher.start(config or self.config, runs_root=self.runs_root, spawn=self.spawn_trainer)
        except Exception as exc:  # shown, never fatal
            self.report(exc, "Training not started")
            return None
        self.live_handle = handle
        self.notify(f"Started {handle.run_dir.name}", title="Training")
        self.open_run(handle.run_dir.path)
        return handle

    def resume_run(self, run_path: str | os.PathLike) -> TrainerHandle | None:
        """Continue the run, in its own folder, from its last complete checkpoint; the handle or None."""
        if self.training_is_live():
            self.notify("A run is already training; stop it before resuming another.",
                        title="Not resumed", severity="warning")
            return None
        run_dir = RunDir(run_path)
        try:
            handle = launcher.resume(run_dir, spawn=self.spawn_trainer)
        except Exception as exc:
            self.report(exc, "Run not resumed")
            return None
        self.live_handle = handle
        self.notify(f"Resuming {run_dir.name} from {run_dir.last_checkpoint().name}", title="Training")
        self.open_run(run_dir.path)
        return handle

    # ----------------------------------------------------------------- actions
    def action_load_config(self) -> None:
        from tuitune.ui.widgets.path_prompt import PathPrompt

        def done(path: str | None) -> None:
            if path:
                self.load_config_file(path)

        self.push_screen(PathPrompt("Load config from", value=str(self.config_path or "")), done)

    def action_save_config(self) -> None:
        from tuitune.ui.widgets.path_prompt import PathPrompt

        def done(path: str | None) -> None:
            if path:
                self.save_config_file(path)

        self.push_screen(PathPrompt("Save config to", value=str(self.config_path or "tuitune.toml")), done)

    async def action_switch_mode(self, mode: str) -> None:
        """Switch screens; the help screen closes first rather than waiting in the old screen's stack."""
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        self.switch_mode(mode)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        else:
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        from tuitune.ui.widgets.quit_dialog import QuitDialog

        handle = self.live_handle
        if handle is None or not handle.is_alive():
            self.exit(0)
            return
        if isinstance(self.screen, QuitDialog):
            return
        self.push_screen(QuitDialog(handle.run_dir.name), self._quit_choice)

    def _quit_choice(self, choice: str | None) -> None:
        from tuitune.ui.widgets.quit_dialog import KEEP, STOP

        handle = self.live_handle
        if handle is None:
            return
        if choice == STOP:
            handle.stop()
            self.exit(0, message="Stop requested: the trainer saves a final checkpoint and exits.")
        elif choice == KEEP:
            handle.detach()
            self.exit(0, message=f"The run keeps training in the background in {handle.run_dir.path}. "
                                 "Reopen it from the Runs screen.")


def _path_key(path: str) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).expanduser().resolve())
    except OSError:
        return path


def interactive_terminal() -> bool:
    return all(stream is not None and stream.isatty() for stream in (sys.__stdin__, sys.__stdout__))


def run_app(*, no_mouse: bool = False, inline: bool = False, theme: str | None = None,
            runs_root: str | os.PathLike | None = None, truecolor: bool = False) -> int:
    """Run the TUI until the user quits; the exit code.

    `truecolor` forces 24-bit colour where SSH or tmux did not pass COLORTERM=truecolor through.
    """
    if not interactive_terminal():
        raise TuituneError("The terminal app needs an interactive terminal, but stdin or stdout is not one "
                           "(a pipe, a file or a job without a TTY). Run it in a terminal (ssh -t for a remote "
                           "command), or use the headless commands: tuitune train, tuitune runs, tuitune gpu, "
                           "tuitune models.")
    if truecolor:
        os.environ["COLORTERM"] = "truecolor"
    app = TuituneApp(theme=theme, runs_root=runs_root)
    result = app.run(mouse=not no_mouse, inline=inline)
    if app.return_code not in (None, 0):
        return app.return_code
    return int(result or 0)
