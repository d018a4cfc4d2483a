"""Monitor screen: the live (or recorded) view of one training run.

Two sources feed it (tuitune.run_feed). A run this UI started has a trainer handle
(`app.live_handle`): a thread worker drains its queue with a timeout. Any other run, live in the
background or long finished, is read from disk: its events.jsonl is tailed, and controls go through
the run's control file. Either way the worker also tails train.log, gathers what arrived for a
quarter of a second and posts it as one batch, so the screen redraws a few times a second at most
however fast the trainer reports. The events fold into a RunState (tuitune.run_state), the reducer
the Runs screen and `tuitune runs` use too. Whatever goes wrong underneath (the trainer dies without
a word, events.jsonl holds damaged or torn lines, the run folder is deleted, the disk fills up) is
said in a toast and in the log, and the screen goes on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Label, ProgressBar, Static
from textual.worker import get_current_worker

from tuitune import events as ev
from tuitune.run_feed import EventSource, FileSource, HandleSource, LogTail, RunWatch, event_key
from tuitune.run_state import ENDED, RunState
from tuitune.runs import RunDir, settle, summarize
from tuitune.ui.widgets.confirm import ConfirmModal
from tuitune.ui.widgets.loss_chart import LossChart
from tuitune.ui.widgets.run_log import RunLog, event_lines
from tuitune.ui.widgets.run_stats import RunStats, clock_text

BATCH_SECONDS = 0.25      # the worker posts at most this often: at most 4 redraws a second


class MonitorScreen(Screen):
    """Follow a live or past run: loss chart, stats, progress, log tail and controls."""

    TITLE = "Monitor"

    BINDINGS = [
        Binding("p", "pause", "Pause", tooltip="Pause training after the current step", id="monitor.pause"),
        Binding("r", "resume", "Resume", tooltip="Resume a paused run", id="monitor.resume"),
        Binding("x", "stop", "Stop", tooltip="Save a final checkpoint and finish the run", id="monitor.stop"),
        Binding("c", "save_now", "Checkpoint", tooltip="Save a checkpoint now and keep training",
                id="monitor.save_now"),
        Binding("t", "chat", "Chat", tooltip="Chat with this run's adapter on the Chat screen", id="monitor.chat"),
        Binding("e", "export", "Export", tooltip="Export this run's adapter (Export screen)", id="monitor.export"),
    ]

    class Batch(Message):
        """Events and train.log lines gathered by the reader worker for one redraw."""

        def __init__(self, generation: int, events: list[dict[str, Any]], lines: list[str], ended: bool,
                     notices: list[str] | None = None) -> None:
            super().__init__()
            self.generation = generation
            self.events = events
            self.lines = lines
            self.ended = ended
            self.notices = notices or []   # trouble with the run's folder (RunWatch), said once each

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_path: Path | None = None
        self.run: RunDir | None = None
        self.source: EventSource | None = None
        self.state = RunState()
        self._generation = 0
        self._pending: Path | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("No run open. Start one from the Hyperparameters screen or open one from Runs.",
                     id="monitor-status", markup=False)
        with Horizontal(id="monitor-top"):
            yield LossChart(id="monitor-chart")
            with VerticalScroll(id="monitor-side"):
                yield RunStats(id="monitor-stats")
                with Horizontal(id="monitor-progress-row"):
                    yield ProgressBar(total=None, show_eta=False, id="monitor-progress")
                    yield Label("ETA -", id="monitor-eta")
                with Grid(id="monitor-controls"):
                    yield Button("Pause", id="monitor-pause", tooltip="Pause after the current step (p)")
                    yield Button("Resume", id="monitor-resume", tooltip="Resume training (r)")
                    yield Button("Stop", id="monitor-stop", variant="error",
                                 tooltip="Final checkpoint, then finish (x)")
                    yield Button("Checkpoint", id="monitor-save", tooltip="Save a checkpoint now (c)")
        yield RunLog(id="monitor-log")
        yield Footer()

    # widgets
    @property
    def status_bar(self) -> Static:
        return self.query_one("#monitor-status", Static)

    @property
    def chart(self) -> LossChart:
        return self.query_one(LossChart)

    @property
    def stats(self) -> RunStats:
        return self.query_one(RunStats)

    @property
    def progress(self) -> ProgressBar:
        return self.query_one(ProgressBar)

    @property
    def eta(self) -> Label:
        return self.query_one("#monitor-eta", Label)

    @property
    def run_log(self) -> RunLog:
        return self.query_one(RunLog)

    def on_mount(self) -> None:
        self.stats.border_title = "Stats"
        self.run_log.border_title = "Log"
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.show_run(pending)

    def on_screen_resume(self) -> None:
        handle = self.app.live_handle
        if self.run_path is None and handle is not None:
            self.show_run(handle.run_dir.path)

    @property
    def status(self) -> str:
        """The run's status as shown: "starting" until the first event of a run started here."""
        if self.state.status == "created" and isinstance(self.source, HandleSource):
            return "starting"
        return self.state.status

    # opening a run
    def show_run(self, run_path: Path) -> None:
        """Open the run at ``run_path``: its history at once, then live events as they come."""
        run_path = Path(run_path)
        if not self.is_mounted:
            self._pending = run_path
            return
        if self._following_live(run_path):
            return  # already shown and read live: opening it again would replay its history from disk
        self._generation += 1
        self.workers.cancel_group(self, "monitor-reader")
        self.run_path = run_path
        self.run = RunDir(run_path)
        self.chart.clear()
        self.run_log.clear()
        self.progress.update(total=None, progress=0)
        self.eta.update("ETA -")

        handle = self.app.live_handle
        if handle is not None and _same_path(handle.run_dir.path, run_path):
            # History already on disk (if this screen was away) is shown once; the queue's copies skipped.
            history = self.run.events()
            self.state = RunState()
            self._apply(history, [])
            self.source = HandleSource(handle, skip={event_key(e) for e in history})
        else:
            self.source = FileSource(self.run)
            self.state = summarize(self.run)  # the settled status at once; the reader replays the events
        self._show_status()
        watch = RunWatch(self.run, self.source.tail if isinstance(self.source, FileSource) else None)
        self._read(self.source, self._generation, LogTail(self.run.log_path), watch)

    def _following_live(self, run_path: Path) -> bool:
        """Whether this screen already reads `run_path` from the app's live trainer handle (the screen's
        resume and an open_run both open a run started here)."""
        handle = self.app.live_handle
        return (self.run_path is not None and _same_path(Path(self.run_path), run_path)
                and isinstance(self.source, HandleSource) and handle is not None and self.source.handle is handle
                and any(w.group == "monitor-reader" and not w.is_finished for w in self.workers))

    @work(thread=True, exclusive=True, group="monitor-reader", name="run reader", exit_on_error=False)
    def _read(self, source: EventSource, generation: int, tail: LogTail, watch: RunWatch) -> None:
        worker = get_current_worker()
        ended = False
        while not worker.is_cancelled and not ended:
            deadline = time.monotonic() + BATCH_SECONDS
            batch: list[dict[str, Any]] = []
            while not worker.is_cancelled:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                batch.extend(source.read(timeout=min(remaining, 0.1)))
            if worker.is_cancelled:  # a newer reader follows the run now: it shows what this one took
                source.give_back(batch)
                return
            lines = tail.read()
            if any(e.get("type") in ev.TERMINAL for e in batch):
                ended = True
            elif not batch and not source.is_alive():
                # Nothing came and no trainer is running: a finished, stopped or failed run.
                batch.extend(source.read(timeout=0))
                lines += tail.read()
                ended = True
            notices = watch.check(ended=ended, alive=not ended and source.is_alive())
            if batch or lines or ended or notices:
                self.post_message(self.Batch(generation, batch, lines, ended, notices))

    def on_monitor_screen_batch(self, message: Batch) -> None:
        if message.generation != self._generation:
            return
        self._apply(message.events, message.lines)
        notices = list(message.notices)
        if message.ended and self.run is not None:
            before = self.state.status
            settle(self.state, self.run)
            if self.state.status == "failed" and before != "failed" and self.state.error:
                notices.append(self.state.error)  # the trainer died without a final event
        # Toasts for a run that was live when opened; a recorded run's history says it in the log only.
        toast = self.is_attached and bool(self.source and self.source.live)
        for notice in notices:
            self.run_log.write_line(f"NOTICE: {notice}")
            if toast:
                self.notify(notice, title=self.run.name if self.run else "Monitor", severity="warning",
                            timeout=10)
        self._show_status()

    # applying events
    def _apply(self, events: list[dict[str, Any]], lines: list[str]) -> None:
        train: list[tuple[float, float]] = []
        evals: list[tuple[float, float]] = []
        out: list[str] = []
        state = self.state
        for event in events:
            state.apply(event)
            out += event_lines(event, state)
            kind = event.get("type")
            if kind == ev.STEP and event.get("loss") is not None:
                train.append((float(event["step"]), float(event["loss"])))
            elif kind == ev.EVAL and event.get("eval_loss") is not None:
                evals.append((float(event.get("step", 0)), float(event["eval_loss"])))
            elif kind == ev.FAILED and self.is_attached:
                self.notify(str(event.get("message", "The run failed")), title="Training failed",
                            severity="error", timeout=10)
            elif kind == ev.WARNING and event.get("notify") and self.is_attached:
                self.notify(str(event.get("text", "")), title="Training", severity="warning", timeout=10)
        out.extend(f"train.log │ {line}" for line in lines)
        if out:
            self.run_log.write_lines(out)
        if train or evals or state.max_steps:
            self.chart.add_points(train, evals, state.max_steps or None)
        self._show_progress()
        self.stats.show(state)

    def _show_progress(self) -> None:
        step = self.state.last_step
        self.progress.update(total=self.state.max_steps or None, progress=int(step.get("step", 0) or 0))
        if self.state.status in ("finished", "stopped"):
            eta = "done"
        else:
            eta = clock_text(step.get("eta_s")) if step else "-"
        self.eta.update(f"ETA {eta}")

    def _show_status(self) -> None:
        if self.run is None:
            return
        kind = "live, started here" if isinstance(self.source, HandleSource) else (
            "following events.jsonl" if self.source is not None and self.source.live else "recorded")
        parts = [self.run.name, self.status]
        if self.state.model:
            method = " ".join(p for p in (self.state.method, self.state.dtype) if p)
            parts.append(" ".join(p for p in (self.state.model, method) if p)
                         + (f" on {self.state.device}" if self.state.device else ""))
        parts.append(kind)
        self.status_bar.update("  ·  ".join(parts))

    # controls
    def _control(self, command: str, done: str) -> None:
        if self.source is None or self.run is None:
            self.notify("No run is open. Open one from Runs or start one from the form.", severity="warning")
            return
        if self.state.status in ENDED or not self.source.is_alive():
            self.notify(f"Run {self.run.name} is not running ({self.status}); nothing to {command.replace('_', ' ')}.",
                        severity="warning")
            return
        try:
            self.source.control(command)
        except Exception as exc:  # a dead pipe or an unwritable control file; tell the user, keep the app
            self.notify(f"Could not send {command} to {self.run.name}: {exc}", severity="error")
            return
        self.notify(done, title=self.run.name)

    def action_pause(self) -> None:
        self._control(ev.PAUSE, "Pause requested: the run pauses after the current step.")

    def action_resume(self) -> None:
        self._control(ev.RESUME, "Resume requested.")

    def action_save_now(self) -> None:
        self._control(ev.SAVE_NOW, "Checkpoint requested: it appears in the log when saved.")

    def action_stop(self) -> None:
        if self.run is None or self.source is None:
            self._control(ev.STOP, "")
            return

        def answered(stop: bool | None) -> None:
            if stop:
                self._control(ev.STOP, "Stop requested: a final checkpoint is being saved.")

        question = f"Stop {self.run.name}? It saves a final checkpoint, then finishes."
        self.app.push_screen(ConfirmModal(question, confirm_label="Stop (y)"), answered)

    def action_chat(self) -> None:
        if self.run_path is None:
            self.notify("No run is open. Open one from Runs first.", severity="warning")
            return
        self.app.open_chat(self.run_path)

    def action_export(self) -> None:
        if self.run_path is None:
            self.notify("No run is open. Open one from Runs first.", severity="warning")
            return
        self.app.open_export(self.run_path)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {"monitor-pause": self.action_pause, "monitor-resume": self.action_resume,
                   "monitor-stop": self.action_stop, "monitor-save": self.action_save_now}
        action = actions.get(event.button.id or "")
        if action is not None:
            event.stop()
            action()


def _same_path(a: Any, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return Path(a) == Path(b)
