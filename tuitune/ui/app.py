"""The tuitune terminal app: six screens as Textual MODES, themes, the command palette, the quit guard.

Shared state that every screen relies on (the contract between the screens):

    app.config            tuitune.config.Config   the run being prepared; forms edit it in place
    app.config_path       Path | None             where it was last loaded from / saved to
    app.config_changed_signal  Signal[Config]     published when the config is replaced or edited
                                                  outside a form (new, load, model picked)
    app.gpu_source        tuitune.hardware.GpuSource   `.snapshot()` -> HardwareSnapshot
    app.runs_root         Path | None             runs root (None: $TUITUNE_RUNS or the XDG data dir)
    app.trainer_factory   (config, run_dir, **kwargs) -> handle; default: the trainer launcher
                          (imported lazily); tests inject a fake
    app.live_handle       the handle of the run this UI started and still follows, or None
    app.open_run(path)    switch to the monitor and show that run (MonitorScreen.show_run)
    app.start_training(config=None) -> handle | None
                          create a run directory for the config (default app.config), start the
                          trainer, open the monitor; None (with a toast saying why) when it cannot
    app.resume_run(path)  start a trainer that continues that run from its last checkpoint
                          (factory called with resume_from=<checkpoint path>)
    app.config_edited()   publish config_changed_signal after editing app.config in place
    app.set_config(config, path=None), app.load_config_file(path), app.save_config_file(path),
    app.new_config()      replace / read / write the config (errors become toasts)
    app.report(error, title)   show an exception as an error toast (never a traceback)

Keys: F2–F7 (and 1–6 outside text fields) switch screens, F1 help, ctrl+p palette, ctrl+q quit;
binding ids are remappable in <config dir>/settings.toml [keymap].

The UI never imports torch/transformers/... at import time; the trainer is a spawned child process.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.signal import Signal
from textual.worker import Worker, WorkerState

from tuitune.config import Config, load_config, save_config
from tuitune.errors import TuituneError

DEFAULT_THEME = "tuitune-dark"

# mode name -> (module, class, key, footer label)
SCREENS: dict[str, tuple[str, str, str, str]] = {
    "gpu": ("tuitune.ui.screens.gpu", "GpuScreen", "1", "GPU"),
    "models": ("tuitune.ui.screens.models", "ModelsScreen", "2", "Models"),
    "dataset": ("tuitune.ui.screens.dataset", "DatasetScreen", "3", "Data"),
    "hyperparams": ("tuitune.ui.screens.hyperparams", "HyperparamsScreen", "4", "Params"),
    "monitor": ("tuitune.ui.screens.monitor", "MonitorScreen", "5", "Monitor"),
    "runs": ("tuitune.ui.screens.runs", "RunsScreen", "6", "Runs"),
}
# F-keys reach the app even when a text field has focus (digits would go into the field), and F-keys
# pass through tmux and SSH (htop and mc rely on them); neither collides with a tmux prefix.
FKEYS = {"gpu": "f2", "models": "f3", "dataset": "f4", "hyperparams": "f5", "monitor": "f6", "runs": "f7"}


def _screen_factory(mode: str) -> Callable[[], Screen]:
    module_name, class_name, _, _ = SCREENS[mode]

    def make() -> Screen:
        import importlib

        return getattr(importlib.import_module(module_name), class_name)()

    make.__name__ = f"make_{mode}_screen"
    return make


def _mode_bindings() -> list[Binding]:
    """F2–F7 (shown in the footer, priority so they work inside text fields), digits 1–6 as aliases."""
    bindings = []
    for mode, key in FKEYS.items():
        label = SCREENS[mode][3]
        bindings.append(Binding(key, f"switch_mode('{mode}')", label, priority=True, id=f"screen.{mode}.fkey",
                                tooltip=f"Show the {label} screen (also key {SCREENS[mode][2]})"))
    for mode, (_, _, key, label) in SCREENS.items():
        bindings.append(Binding(key, f"switch_mode('{mode}')", label, show=False, id=f"screen.{mode}",
                                tooltip=f"Show the {label} screen"))
    return bindings


def _commands_provider() -> type:
    from tuitune.ui.commands import TuituneCommands

    return TuituneCommands


def default_trainer_factory(config: Config, run_dir: Any, **kwargs: Any) -> Any:
    """Start the real trainer (a spawned child process); imported only when a run starts."""
    from tuitune.trainer.launcher import start_training

    return start_training(config, run_dir, **kwargs)


def default_gpu_source() -> Any:
    """NVML, or a fake when $TUITUNE_FAKE_GPU is h200, none or unsupported (demos and tests)."""
    from tuitune import hardware

    return hardware.default_source()


def handle_alive(handle: Any) -> bool:
    """True while a trainer handle's process runs (duck-typed: is_alive(), or its run dir's pid)."""
    if handle is None:
        return False
    try:
        if hasattr(handle, "is_alive"):
            return bool(handle.is_alive())
        run_dir = getattr(handle, "run_dir", None)
        return bool(run_dir is not None and run_dir.is_live())
    except Exception:  # a handle we cannot ask is treated as gone
        return False


def handle_run_path(handle: Any) -> Path | None:
    run_dir = getattr(handle, "run_dir", None)
    if run_dir is None:
        return None
    return Path(getattr(run_dir, "path", run_dir))


class TuituneApp(App[int]):
    """Fine-tune LLMs from the terminal."""

    TITLE = "tuitune"
    CSS_PATH = "app.tcss"
    MODES = {mode: _screen_factory(mode) for mode in SCREENS}
    DEFAULT_MODE = "gpu"
    COMMANDS = App.COMMANDS | {_commands_provider}

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
        gpu_source: Any = None,
        runs_root: str | os.PathLike | None = None,
        trainer_factory: Callable[..., Any] | None = None,
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
        self.gpu_source = gpu_source if gpu_source is not None else default_gpu_source()
        self.runs_root: Path | None = Path(runs_root).expanduser() if runs_root else None
        self.trainer_factory: Callable[..., Any] = trainer_factory or default_trainer_factory
        self.live_handle: Any = None
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
                raise TuituneError(f"Theme {theme!r} does not exist. Themes: {', '.join(sorted(self.available_themes))}.")
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

    # ----------------------------------------------------------------- runs
    def open_run(self, run_path: str | os.PathLike) -> None:
        """Switch to the monitor and show the run at `run_path` (live or finished)."""
        run_path = Path(run_path)
        await_mount = self.switch_mode("monitor")
        screen = self.screen_stack[0]

        async def show() -> None:
            await await_mount
            screen.show_run(run_path)

        self.run_worker(show(), name="open run", group="open-run", exit_on_error=False)

    def _launch(self, config: Config, run_dir: Any, **kwargs: Any) -> Any:
        # Textual replaces sys.stderr; multiprocessing needs the real one (FACTS.md).
        with contextlib.redirect_stderr(sys.__stderr__):
            return self.trainer_factory(config, run_dir, **kwargs)

    def start_training(self, config: Config | None = None) -> Any:
        """Create a run directory for the config, start the trainer, open the monitor; the handle or None."""
        from tuitune.runs import RunDir

        config = config or self.config
        if handle_alive(self.live_handle):
            self.notify("A run is already training; stop it first (Monitor screen) or wait for it.",
                        title="Not started", severity="warning")
            return None
        try:
            run_dir = RunDir.create(config.output.dir or self.runs_root, run_name(config))
            run_dir.write_config(config)
            handle = self._launch(config, run_dir)
        except Exception as exc:  # shown, never fatal
            self.report(exc, "Training not started")
            return None
        self.live_handle = handle
        self.notify(f"Started {run_dir.name}", title="Training")
        self.open_run(run_dir.path)
        return handle

    def resume_run(self, run_path: str | os.PathLike) -> Any:
        """Start a trainer that continues the run, in its own folder, from its last complete checkpoint."""
        from tuitune.runs import RunDir

        run_dir = RunDir(run_path)
        if handle_alive(self.live_handle):
            self.notify("A run is already training; stop it before resuming another.",
                        title="Not resumed", severity="warning")
            return None
        try:
            if run_dir.is_live():
                raise TuituneError(f"Run {run_dir.name} is still training; open it instead of resuming it.")
            checkpoints = run_dir.checkpoints()
            if not checkpoints:
                raise TuituneError(f"Run {run_dir.name} has no complete checkpoint to resume from "
                                   f"({run_dir.checkpoints_dir} is empty). Start a new run instead.")
            config = run_dir.load_config()
            handle = self._launch(config, run_dir, resume_from=str(checkpoints[-1]))
        except Exception as exc:
            self.report(exc, "Run not resumed")
            return None
        self.live_handle = handle
        self.notify(f"Resuming {run_dir.name} from {checkpoints[-1].name}", title="Training")
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
        from tuitune.ui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        self.switch_mode(mode)

    def action_help(self) -> None:
        from tuitune.ui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        else:
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        from tuitune.ui.widgets.quit_dialog import QuitDialog

        handle = self.live_handle
        if not handle_alive(handle):
            self.exit(0)
            return
        if isinstance(self.screen, QuitDialog):
            return
        path = handle_run_path(handle)
        self.push_screen(QuitDialog(path.name if path else "the current run"), self._quit_choice)

    def _quit_choice(self, choice: str | None) -> None:
        from tuitune.ui.widgets.quit_dialog import KEEP, STOP

        handle = self.live_handle
        if choice == STOP:
            stop_handle(handle)
            self.exit(0, message="Stop requested: the trainer saves a final checkpoint and exits.")
        elif choice == KEEP:
            detach_handle(handle)
            path = handle_run_path(handle)
            where = f" in {path}" if path else ""
            self.exit(0, message=f"The run keeps training in the background{where}. "
                                 "Reopen it from the Runs screen.")


def run_name(config: Config) -> str:
    if config.output.name:
        return config.output.name
    model = Path(config.model.name).name or "model"
    data = Path(config.data.path).stem if config.data.path else "sample"
    return f"{model}-{data}"


def stop_handle(handle: Any) -> None:
    """Ask a trainer to stop with a final checkpoint (through its handle, else its control file)."""
    if hasattr(handle, "stop"):
        handle.stop()
    elif hasattr(handle, "send"):
        handle.send("stop")
    elif getattr(handle, "run_dir", None) is not None:
        handle.run_dir.send_control("stop")


def detach_handle(handle: Any) -> None:
    """Let a trainer outlive the UI (the handle's `detach()`, where it has one)."""
    if hasattr(handle, "detach"):
        handle.detach()


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
