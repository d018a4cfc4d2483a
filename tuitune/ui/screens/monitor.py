"""Monitor screen: the live (or recorded) view of one training run.

Two sources feed it. A run this UI started has a trainer handle (`app.live_handle`): a thread
worker drains its queue with a timeout. Any other run, live in the background or long finished, is
read from disk: an EventFollower tails its events.jsonl, and controls go through the run's control
file. Either way the worker also tails train.log, gathers what arrived for a quarter of a second
and posts it as one batch, so the screen redraws a few times a second at most however fast the
trainer reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Label, Log, ProgressBar, Static
from textual.worker import get_current_worker

from tuitune import events as ev
from tuitune.runs import EventFollower, RunDir, summarize
from tuitune.ui.widgets.confirm import ConfirmModal
from tuitune.ui.widgets.loss_chart import LossChart, format_value

BATCH_SECONDS = 0.25      # the worker posts at most this often: at most 4 redraws a second
LOG_LINES = 1000          # the log widget's line cap
LOG_TAIL_BYTES = 64_000   # how much of an existing train.log is shown when a run is opened


def clock_text(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def event_key(event: dict[str, Any]) -> tuple:
    return (event.get("type"), event.get("ts"), event.get("step"))


class Source(Protocol):
    """Where a run's events come from and where its controls go."""

    live: bool

    def read(self, timeout: float) -> list[dict[str, Any]]: ...

    def control(self, command: str) -> None: ...

    def is_alive(self) -> bool: ...


class HandleSource:
    """A run started by this UI: events from the trainer handle's queue, controls to the handle."""

    live = True

    def __init__(self, handle: Any, skip: set[tuple] | None = None) -> None:
        self.handle = handle
        self.skip = skip or set()

    def read(self, timeout: float) -> list[dict[str, Any]]:
        found = self.handle.poll(timeout=timeout)
        if self.skip:
            found = [e for e in found if event_key(e) not in self.skip]
        return found

    def control(self, command: str) -> None:
        getattr(self.handle, command)()

    def is_alive(self) -> bool:
        return bool(self.handle.is_alive())


class FileSource:
    """Any other run: events tailed from events.jsonl, controls written to the control file."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.follower = EventFollower(run)
        self.live = run.is_live()

    def read(self, timeout: float) -> list[dict[str, Any]]:
        found = self.follower.poll()
        if not found and timeout > 0:
            time.sleep(timeout)
        return found

    def control(self, command: str) -> None:
        self.run.send_control(command)

    def is_alive(self) -> bool:
        return self.run.is_live()


class LogTail:
    """New complete lines of a text file since the last call (carriage-return progress collapsed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset: int | None = None
        self.partial = ""

    def read(self) -> list[str]:
        try:
            with open(self.path, "rb") as handle:
                if self.offset is None:
                    handle.seek(0, 2)
                    size = handle.tell()
                    self.offset = max(0, size - LOG_TAIL_BYTES)
                handle.seek(self.offset)
                chunk = handle.read()
                self.offset = handle.tell()
        except OSError:
            return []
        text = self.partial + chunk.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self.partial = lines.pop()
        return [line.split("\r")[-1].rstrip() for line in lines if line.split("\r")[-1].strip()]


@dataclass
class RunView:
    """What the screen shows, accumulated from events."""

    status: str = "waiting"
    model: str = ""
    device: str = ""
    method: str = ""
    started_ts: float | None = None
    last_step: dict[str, Any] = field(default_factory=dict)
    eval_loss: float | None = None
    max_steps: int = 0


class MonitorScreen(Screen):
    """Follow a live or past run: loss chart, stats, progress, log tail and controls."""

    TITLE = "Monitor"

    BINDINGS = [
        Binding("p", "pause", "Pause", tooltip="Pause training after the current step", id="monitor.pause"),
        Binding("r", "resume", "Resume", tooltip="Resume a paused run", id="monitor.resume"),
        Binding("x", "stop", "Stop", tooltip="Save a final checkpoint and finish the run", id="monitor.stop"),
        Binding("c", "save_now", "Checkpoint", tooltip="Save a checkpoint now and keep training",
                id="monitor.save_now"),
    ]

    DEFAULT_CSS = """
    MonitorScreen #monitor-status { height: 1; padding: 0 1; background: $boost; }
    MonitorScreen #monitor-top { height: 1fr; }
    MonitorScreen #monitor-chart { width: 2fr; }
    MonitorScreen #monitor-side { width: 1fr; min-width: 34; }
    MonitorScreen #monitor-stats {
        height: auto; padding: 0 1; border: round $primary 50%;
    }
    MonitorScreen #monitor-progress-row { height: 1; padding: 0 1; margin-top: 1; }
    MonitorScreen #monitor-progress { width: 1fr; }
    MonitorScreen #monitor-eta { width: auto; padding-left: 1; }
    MonitorScreen #monitor-controls {
        layout: grid; grid-size: 2; grid-gutter: 0 0; height: auto; margin-top: 1;
    }
    MonitorScreen #monitor-controls Button { min-width: 10; width: 1fr; margin: 0 0 0 1; }
    MonitorScreen #monitor-log { height: 30%; min-height: 5; border: round $primary 50%; }
    """

    class Batch(Message):
        """Events and train.log lines gathered by the reader worker for one redraw."""

        def __init__(self, generation: int, events: list[dict[str, Any]], lines: list[str], ended: bool) -> None:
            super().__init__()
            self.generation = generation
            self.events = events
            self.lines = lines
            self.ended = ended

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_path: Path | None = None
        self.run: RunDir | None = None
        self.source: Source | None = None
        self.view = RunView()
        self._generation = 0
        self._pending: Path | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("No run open. Start one from the Hyperparameters screen or open one from Runs.",
                     id="monitor-status", markup=False)
        with Horizontal(id="monitor-top"):
            yield LossChart(id="monitor-chart")
            with VerticalScroll(id="monitor-side"):
                yield Static(self._stats_text(), id="monitor-stats", markup=False)
                with Horizontal(id="monitor-progress-row"):
                    yield ProgressBar(total=None, show_eta=False, id="monitor-progress")
                    yield Label("ETA -", id="monitor-eta")
                with Grid(id="monitor-controls"):
                    yield Button("Pause", id="monitor-pause", tooltip="Pause after the current step (p)")
                    yield Button("Resume", id="monitor-resume", tooltip="Resume training (r)")
                    yield Button("Stop", id="monitor-stop", variant="error",
                                 tooltip="Final checkpoint, then finish (x)")
                    yield Button("Checkpoint", id="monitor-save", tooltip="Save a checkpoint now (c)")
        yield Log(max_lines=LOG_LINES, id="monitor-log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#monitor-stats", Static).border_title = "Stats"
        self.query_one("#monitor-log", Log).border_title = "Log"
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.show_run(pending)

    def on_screen_resume(self) -> None:
        handle = getattr(self.app, "live_handle", None)
        if self.run_path is None and handle is not None:
            self.show_run(Path(handle.run_dir.path))

    # opening a run
    def show_run(self, run_path: Path) -> None:
        """Open the run at ``run_path``: its history at once, then live events as they come."""
        run_path = Path(run_path)
        if not self.is_mounted:
            self._pending = run_path
            return
        self._generation += 1
        self.workers.cancel_group(self, "monitor-reader")
        self.run_path = run_path
        self.run = RunDir(run_path)
        self.view = RunView()
        chart = self.query_one(LossChart)
        chart.clear()
        log = self.query_one(Log)
        log.clear()
        progress = self.query_one(ProgressBar)
        progress.update(total=None, progress=0)
        self.query_one("#monitor-eta", Label).update("ETA -")

        handle = getattr(self.app, "live_handle", None)
        if handle is not None and _same_path(handle.run_dir.path, run_path):
            # History already on disk (if this screen was away) is shown once; the queue's copies skipped.
            history = self.run.events()
            self._apply(history, [])
            self.source = HandleSource(handle, skip={event_key(e) for e in history})
            if self.view.status == "waiting":  # no event on disk yet: the trainer is still starting
                self.view.status = "starting"
        else:
            self.source = FileSource(self.run)
            info = summarize(self.run)
            self.view.status = info.status
        self._show_status()
        self._read(self.source, self._generation, LogTail(self.run.log_path))

    @work(thread=True, exclusive=True, group="monitor-reader")
    def _read(self, source: Source, generation: int, tail: LogTail) -> None:
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
            lines = tail.read()
            if any(e.get("type") in ev.TERMINAL for e in batch):
                ended = True
            elif not batch and not source.is_alive():
                # Nothing came and no trainer is running: a finished, failed or interrupted run.
                batch.extend(source.read(timeout=0))
                lines += tail.read()
                ended = True
            if batch or lines or ended:
                self.post_message(self.Batch(generation, batch, lines, ended))

    def on_monitor_screen_batch(self, message: Batch) -> None:
        if message.generation != self._generation:
            return
        self._apply(message.events, message.lines)
        if message.ended and self.view.status in ("running", "paused", "starting", "waiting"):
            self.view.status = summarize(self.run).status if self.run else "ended"
        self._show_status()

    # applying events
    def _apply(self, events: list[dict[str, Any]], lines: list[str]) -> None:
        train: list[tuple[float, float]] = []
        evals: list[tuple[float, float]] = []
        log = self.query_one(Log)
        out: list[str] = []
        view = self.view
        for event in events:
            kind = event.get("type")
            stamp = self._elapsed_stamp(event)
            if kind == ev.STARTED:
                view.started_ts = event.get("ts", view.started_ts)
                stamp = self._elapsed_stamp(event)
                view.model = str(event.get("model", ""))
                view.device = str(event.get("device", ""))
                view.method = " ".join(str(event[k]) for k in ("method", "dtype") if event.get(k))
                view.max_steps = int(event.get("max_steps") or 0)
                view.status = "running"
                params = event.get("trainable_params")
                extra = f", {params:,} trainable parameters" if isinstance(params, int) else ""
                rows = event.get("rows")
                extra += f", {rows:,} training rows" if isinstance(rows, int) else ""
                out.append(f"{stamp} started {view.model} on {view.device}{extra}")
                if event.get("kernels"):
                    out.append(f"{stamp} kernels: {event['kernels']}")
            elif kind == ev.STEP:
                view.last_step = event
                view.max_steps = int(event.get("max_steps") or view.max_steps)
                if view.status != "paused":
                    view.status = "running"
                if event.get("loss") is not None:
                    train.append((float(event["step"]), float(event["loss"])))
            elif kind == ev.EVAL:
                if event.get("eval_loss") is not None:
                    view.eval_loss = float(event["eval_loss"])
                    evals.append((float(event.get("step", 0)), view.eval_loss))
                    out.append(f"{stamp} eval at step {event.get('step')}: loss {format_value(view.eval_loss)}")
            elif kind == ev.CHECKPOINT:
                out.append(f"{stamp} checkpoint at step {event.get('step')}: {event.get('path')}")
            elif kind == ev.LOG:
                out.append(f"{stamp} {event.get('level', 'info')}: {event.get('text', '')}")
            elif kind == ev.WARNING:
                out.append(f"{stamp} WARNING: {event.get('text', '')}")
            elif kind == ev.PAUSED:
                view.status = "paused"
                out.append(f"{stamp} paused at step {event.get('step')}")
            elif kind == ev.RESUMED:
                view.status = "running"
                out.append(f"{stamp} resumed at step {event.get('step')}")
            elif kind == ev.FINISHED:
                summary = event.get("summary") or {}
                view.status = "stopped" if summary.get("stopped") else "finished"
                loss = summary.get("final_loss")
                out.append(f"{stamp} {view.status} after {summary.get('steps', '?')} steps"
                           + (f", final loss {format_value(float(loss))}" if loss is not None else "")
                           + (f"; adapter in {summary['adapter_path']}" if summary.get("adapter_path") else ""))
            elif kind == ev.FAILED:
                view.status = "failed"
                out.append(f"{stamp} FAILED ({event.get('kind', 'error')}): {event.get('message', '')}")
                if event.get("advice"):
                    out.append(f"{stamp} advice: {event['advice']}")
                if self.is_attached:
                    self.notify(str(event.get("message", "The run failed")), title="Training failed",
                                severity="error", timeout=10)
        out.extend(f"train.log │ {line}" for line in lines)
        if out:
            log.write_lines(out)
        if train or evals or view.max_steps:
            self.query_one(LossChart).add_points(train, evals, view.max_steps or None)
        self._show_progress()
        self.query_one("#monitor-stats", Static).update(self._stats_text())

    def _elapsed_stamp(self, event: dict[str, Any]) -> str:
        ts, start = event.get("ts"), self.view.started_ts
        if ts is None or start is None:
            return "+--:--:--"
        return "+" + clock_text(ts - start)

    def _show_progress(self) -> None:
        step = self.view.last_step
        total = self.view.max_steps or None
        bar = self.query_one(ProgressBar)
        bar.update(total=total, progress=int(step.get("step", 0) or 0))
        if self.view.status in ("finished", "stopped"):
            eta = "done"
        else:
            eta = clock_text(step.get("eta_s")) if step else "-"
        self.query_one("#monitor-eta", Label).update(f"ETA {eta}")

    def _stats_text(self) -> str:
        step = self.view.last_step
        view = self.view

        def num(key: str, fmt: str = "{:.4g}") -> str:
            value = step.get(key)
            return "-" if value is None else fmt.format(value)

        max_steps = view.max_steps or step.get("max_steps") or "?"
        lines = [
            f"step       {step.get('step', '-')} / {max_steps}",
            f"epoch      {num('epoch', '{:.2f}')}",
            f"loss       {num('loss')}",
            f"eval loss  {'-' if view.eval_loss is None else format_value(view.eval_loss)}",
            f"lr         {num('lr', '{:.3e}')}",
            f"grad norm  {num('grad_norm')}",
            f"tokens/s   {num('tokens_per_s', '{:,.0f}')}",
            f"samples/s  {num('samples_per_s', '{:.2f}')}",
            *self._memory_lines(step),
            f"elapsed    {clock_text(step.get('elapsed_s')) if step else '-'}",
        ]
        return "\n".join(lines)

    @staticmethod
    def _memory_lines(step: dict[str, Any]) -> list[str]:
        allocated, reserved = step.get("mem_allocated_gb"), step.get("mem_reserved_gb")
        if allocated is not None:
            lines = [f"GPU alloc  {allocated:.2f} GB"]
            if reserved is not None:
                lines.append(f"GPU resv   {reserved:.2f} GB")
            return lines
        if step.get("rss_gb") is not None:
            return [f"RAM        {step['rss_gb']:.2f} GB (no GPU)"]
        return ["GPU mem    -"]

    def _show_status(self) -> None:
        if self.run is None:
            return
        kind = "live, started here" if isinstance(self.source, HandleSource) else (
            "following events.jsonl" if self.source is not None and self.source.live else "recorded")
        parts = [self.run.name, self.view.status]
        if self.view.model:
            parts.append(" ".join(p for p in (self.view.model, self.view.method) if p)
                         + (f" on {self.view.device}" if self.view.device else ""))
        parts.append(kind)
        self.query_one("#monitor-status", Static).update("  ·  ".join(parts))

    # controls
    def _control(self, command: str, done: str) -> None:
        if self.source is None or self.run is None:
            self.notify("No run is open. Open one from Runs or start one from the form.", severity="warning")
            return
        if self.view.status in ("finished", "stopped", "failed") or not self.source.is_alive():
            self.notify(f"Run {self.run.name} is not running ({self.view.status}); nothing to {command.replace('_', ' ')}.",
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
