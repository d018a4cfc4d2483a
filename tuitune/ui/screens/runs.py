"""Runs screen: every run under the runs root with status, duration and final loss; open, resume, delete."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from tuitune.ui.widgets.confirm import ConfirmModal
from tuitune.ui.widgets.path_prompt import PathPrompt
from tuitune.ui.widgets.theme_colors import theme_colors

REFRESH_S = 3.0
STATUS_ROLE = {"running": "loss", "paused": "tight", "finished": "fits", "stopped": "tight",
               "failed": "no_fit", "created": "muted"}


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def evaluation_text(run_path: Path) -> str:
    """The run's best checkpoint and latest evaluation (`tuitune eval`), for the detail panel."""
    from tuitune.evaluation.results import load_latest, summary_text
    from tuitune.trainer.best_checkpoint import read_best

    lines = []
    best = read_best(run_path)
    if best and best.get("eval_loss") is not None:
        lines.append(f"Best: {Path(str(best.get('path', ''))).name} (step {best.get('step')}, "
                     f"eval loss {best['eval_loss']:.4f})")
    results = load_latest(run_path)
    if results:
        lines.append(f"Eval (base → tuned): {summary_text(results)}")
    return "".join(f"\n{line}" for line in lines)


def started_text(ts: float | None) -> str:
    return "—" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


class RunsScreen(Screen):
    """All runs, newest first; refreshed from disk every few seconds."""

    TITLE = "Runs"
    BINDINGS = [
        Binding("o", "open", "Open", id="runs.open", tooltip="Show the run on the Monitor screen"),
        Binding("r", "resume", "Resume", id="runs.resume", tooltip="Continue from the last checkpoint"),
        Binding("d", "delete", "Delete", id="runs.delete", tooltip="Delete the run folder (asks first)"),
        Binding("t", "chat", "Chat", id="runs.chat", tooltip="Chat with the run's adapter on the Chat screen"),
        Binding("e", "export", "Export", id="runs.export", tooltip="Export the run's adapter (Export screen)"),
        Binding("v", "evaluate", "Evaluate", id="runs.evaluate",
                tooltip="Measure base vs tuned on a held-out file (tuitune eval); results show below"),
        Binding("ctrl+r", "reload", "Reload", id="runs.reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="runs-screen")
        self.runs: list[Any] = []

    def compose(self) -> ComposeResult:
        yield Header(icon="▣")
        yield Static("", id="runs-root")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="run-detail")
        yield Footer()

    # widgets
    @property
    def root_label(self) -> Static:
        return self.query_one("#runs-root", Static)

    @property
    def table(self) -> DataTable:
        return self.query_one("#runs-table", DataTable)

    @property
    def detail(self) -> Static:
        return self.query_one("#run-detail", Static)

    def on_mount(self) -> None:
        from tuitune.paths import runs_root

        self.root_label.update(f"Runs in [b]{escape(str(runs_root(self.app.runs_root)))}[/b]")
        table = self.table
        # what matters most first, so it shows at 80 columns: status, loss, duration
        table.add_column("Run", key="name")
        table.add_column("Status", key="status")
        table.add_column("Final loss", key="loss")
        table.add_column("Duration", key="duration")
        table.add_column("Steps", key="steps")
        table.add_column("Model", key="model")
        table.add_column("Started", key="started")
        table.focus()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.fill(self.runs))
        self.reload()
        self._timer = self.set_interval(REFRESH_S, self.reload)

    def on_screen_suspend(self) -> None:
        self._timer.pause()
        self._suspended = True

    def on_screen_resume(self) -> None:
        if getattr(self, "_suspended", False):
            self._suspended = False
            self._timer.resume()
            self.reload()

    @work(thread=True, exclusive=True, group="runs-list", name="runs list", exit_on_error=False)
    def reload(self) -> None:
        from tuitune.runs import list_runs

        try:
            runs = list_runs(self.app.runs_root)
        except OSError as exc:  # an unreadable runs root: say so on the screen, keep polling
            self.app.call_from_thread(self.show_root_error, exc)
            return
        self.app.call_from_thread(self.fill, runs)

    def show_root_error(self, exc: OSError) -> None:
        from tuitune.paths import runs_root

        self.root_label.update(
            f"[b]Cannot read the runs in {escape(str(runs_root(self.app.runs_root)))}[/b]: "
            f"{escape(str(exc.strerror or exc))}. "
            "Check the folder's permissions, or start tuitune with --output DIR.")

    def fill(self, runs: list[Any]) -> None:
        table = self.table
        colors = theme_colors(self.app)
        selected = self.selected_run()
        self.runs = runs
        table.clear()
        for run in runs:
            color = colors.get(STATUS_ROLE.get(run.status, "muted"), colors["text"])
            steps = f"{run.step}/{run.max_steps}" if run.max_steps else str(run.step or "—")
            loss = f"{run.final_loss:.4f}" if run.final_loss is not None else "—"
            # names and model paths are the user's text, never markup: `[old]` in a path is not a style
            table.add_row(Text(run.name), Text(run.status, style=f"bold {color}"), loss, duration_text(run.duration_s),
                          steps, Text(run.model or "—"), started_text(run.started_at), key=run.name)
        if selected is not None:
            names = [run.name for run in runs]
            if selected.name in names:
                table.move_cursor(row=names.index(selected.name))
        self.show_detail()

    def selected_run(self) -> Any:
        table = self.table
        if not self.runs or not table.row_count or table.cursor_row >= len(self.runs):
            return None
        name = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return next((run for run in self.runs if run.name == name), None)

    def show_detail(self) -> None:
        run = self.selected_run()
        detail = self.detail
        if run is None:
            detail.update("No runs yet. Start one from the Params screen (F5) or with `tuitune train`.")
            return
        from tuitune.runs import RunDir

        text = Text.assemble((run.name, "bold"), f"  {run.status}")
        text.append(f"\n{run.path}", style="dim")
        checkpoints = RunDir(run.path).checkpoints()
        if checkpoints:
            text.append(f"\nCheckpoints: {', '.join(c.name for c in checkpoints)}"
                        + ("" if run.status in ("running", "paused", "finished") else "  (r resumes from the last)"))
        text.append(evaluation_text(Path(run.path)))
        if run.error:
            text.append(f"\n{run.error}", style=theme_colors(self.app)["no_fit"])
        detail.update(text)

    # evaluation (tuitune eval in a child process: the UI never loads a model)
    def action_evaluate(self) -> None:
        run = self.selected_run()
        if run is None:
            return
        if run.status in ("running", "paused"):
            self.notify(f"{run.name} is still training; evaluate it when it has finished.", severity="warning")
            return
        from tuitune.runs import RunDir

        try:
            held_out = RunDir(run.path).load_config().data.eval_path
        except Exception:  # noqa: BLE001 - an unreadable config: ask for the file
            held_out = ""
        if held_out:
            self.start_evaluation(Path(run.path), held_out)
            return

        def answered(data: str | None) -> None:
            if data:
                self.start_evaluation(Path(run.path), data)

        self.app.push_screen(PathPrompt("Held-out file to evaluate on (any training format)",
                                        placeholder="held_out.jsonl"), answered)

    def eval_command(self, run_path: Path, data: str) -> list[str]:
        return [sys.executable, "-m", "tuitune", "eval", str(run_path), "--data", data]

    @work(thread=True, group="runs-eval", name="evaluate", exit_on_error=False)
    def start_evaluation(self, run_path: Path, data: str) -> None:
        import subprocess

        self.app.call_from_thread(self.notify, f"Evaluating {run_path.name} on {data}…", title="Evaluate")
        try:
            done = subprocess.run(self.eval_command(run_path, data), capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL)
        except OSError as exc:
            self.app.call_from_thread(self.notify, f"Could not start tuitune eval: {exc}", severity="error")
            return
        if done.returncode == 0:
            self.app.call_from_thread(self.notify, f"{run_path.name}: results saved (eval.json).", title="Evaluate")
        else:
            lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            self.app.call_from_thread(self.notify, lines[-1] if lines else f"tuitune eval exited {done.returncode}",
                                      title="Evaluation failed", severity="error", timeout=10)
        self.app.call_from_thread(self.reload)

    @on(DataTable.RowHighlighted, "#runs-table")
    def _highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    @on(DataTable.RowSelected, "#runs-table")
    def _selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.app.open_run(Path(run.path))

    def action_resume(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.app.resume_run(Path(run.path))

    def action_chat(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.app.open_chat(Path(run.path))

    def action_export(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.app.open_export(Path(run.path))

    def action_reload(self) -> None:
        self.reload()

    def action_delete(self) -> None:
        run = self.selected_run()
        if run is None:
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.delete_run(Path(run.path))

        self.app.push_screen(ConfirmModal(f"Delete run {run.name}?\n\n{run.path}\n\nIts checkpoints, adapter "
                                          "and exports are removed for good."), answer)

    def delete_run(self, path: Path) -> None:
        from tuitune.errors import TuituneError
        from tuitune.runs import RunDir

        try:
            RunDir(path).delete()
        except (TuituneError, OSError) as exc:
            self.app.report(exc, "Run not deleted")
            return
        self.notify(f"Deleted {path.name}", title="Runs")
        self.reload()
