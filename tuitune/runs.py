"""Run directories: `<runs root>/<timestamp>-<name>/` with config, events, log, checkpoints, adapter.

Pure Python: the UI lists and opens runs, live or finished, from disk alone.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuitune import events as ev
from tuitune.errors import TuituneError
from tuitune.paths import atomic_write_text, runs_root

CONFIG_FILE = "config.toml"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "train.log"
PID_FILE = "trainer.pid"
CONTROL_FILE = "controls.jsonl"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
EXPORTS = "exports"


def slug(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-.")
    return text[:60] or "run"


class RunDir:
    """One run's folder. The trainer writes it; anyone may read it at any time."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def create(cls, root: str | os.PathLike | None, name: str) -> "RunDir":
        root = runs_root(root)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = root / f"{stamp}-{slug(name)}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        try:
            (path / CHECKPOINTS).mkdir(parents=True)
        except OSError as exc:
            raise TuituneError(f"Cannot create the run directory {path} ({exc.strerror}). "
                               "Pick another folder with --output or free some space.") from None
        return cls(path)

    @classmethod
    def open(cls, ref: str | os.PathLike, root: str | os.PathLike | None = None) -> "RunDir":
        """A run by path, by folder name under the runs root, or by a unique name suffix."""
        candidate = Path(ref).expanduser()
        if (candidate / CONFIG_FILE).exists() or (candidate / EVENTS_FILE).exists():
            return cls(candidate)
        base = runs_root(root)
        if (base / str(ref) / CONFIG_FILE).exists():
            return cls(base / str(ref))
        matches = [p for p in base.glob(f"*{ref}*") if (p / CONFIG_FILE).exists()] if base.exists() else []
        if len(matches) == 1:
            return cls(matches[0])
        if len(matches) > 1:
            names = ", ".join(sorted(p.name for p in matches)[:5])
            raise TuituneError(f"Run {ref!r} matches several runs in {base} ({names}). Give the full name.")
        raise TuituneError(f"No run named {ref!r} in {base}. `tuitune runs` lists the runs; "
                           "pass a run folder's path or use --output to point at another runs root.")

    # paths
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def pid_path(self) -> Path:
        return self.path / PID_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def adapter_dir(self) -> Path:
        return self.path / ADAPTER

    @property
    def exports_dir(self) -> Path:
        return self.path / EXPORTS

    # writing
    def write_config(self, config) -> None:
        from tuitune.config import to_toml

        atomic_write_text(self.config_path, to_toml(config, commented=True))

    def append_event(self, event: dict[str, Any]) -> None:
        # One write() of a whole line: a kill leaves at most a torn last line, which readers skip.
        with open(self.events_path, "a", encoding="utf-8") as handle:
            handle.write(ev.to_line(event) + "\n")

    def send_control(self, command: str) -> None:
        """Ask the run's trainer to pause, resume, stop or save now; works for detached runs too."""
        if command not in ev.CONTROLS:
            raise ValueError(f"unknown control {command!r}")
        with open(self.path / CONTROL_FILE, "a", encoding="utf-8") as handle:
            handle.write(ev.to_line({"control": command, "ts": time.time()}) + "\n")

    # reading
    def load_config(self):
        from tuitune.config import load_config

        return load_config(self.config_path)

    def events(self) -> list[dict[str, Any]]:
        return list(ev.read_jsonl(self.events_path))

    def checkpoints(self) -> list[Path]:
        if not self.checkpoints_dir.exists():
            return []
        found = [p for p in self.checkpoints_dir.iterdir() if p.is_dir() and p.name.startswith("step-")
                 and (p / "COMPLETE").exists()]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def trainer_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def is_live(self) -> bool:
        pid = self.trainer_pid()
        return pid is not None and _pid_alive(pid)

    def info(self) -> "RunInfo":
        return summarize(self)

    def delete(self) -> None:
        if self.is_live():
            raise TuituneError(f"Run {self.name} is still training (pid {self.trainer_pid()}). Stop it first.")
        shutil.rmtree(self.path)


class EventFollower:
    """Tails a run's events.jsonl: each `poll()` returns the events appended since the last one."""

    def __init__(self, run: RunDir):
        self.run = run
        self._tail = ev.JsonlTail(run.events_path)

    def poll(self) -> list[dict[str, Any]]:
        return [event for event in self._tail.poll() if "type" in event]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as dead
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class RunInfo:
    name: str
    path: Path
    status: str  # running | paused | finished | stopped | failed | interrupted | created
    model: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    step: int = 0
    max_steps: int = 0
    final_loss: float | None = None
    error: str | None = None
    last_event: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else (
            time.time() if self.status in ("running", "paused") else self.last_event.get("ts", self.started_at))
        return max(0.0, end - self.started_at)


def summarize(run: RunDir) -> RunInfo:
    info = RunInfo(name=run.name, path=run.path, status="created")
    paused = False
    for event in ev.read_jsonl(run.events_path):
        kind = event["type"]
        info.last_event = event
        if kind == ev.STARTED:
            info.started_at = event.get("ts")
            info.model = event.get("model", "")
            info.max_steps = event.get("max_steps", 0) or 0
        elif kind == ev.STEP:
            info.step = event.get("step", info.step)
            info.max_steps = event.get("max_steps", info.max_steps) or info.max_steps
            if event.get("loss") is not None:
                info.final_loss = event["loss"]
        elif kind == ev.PAUSED:
            paused = True
        elif kind == ev.RESUMED:
            paused = False
        elif kind == ev.FINISHED:
            info.ended_at = event.get("ts")
            summary = event.get("summary", {})
            info.status = "stopped" if summary.get("stopped") else "finished"
            if summary.get("final_loss") is not None:
                info.final_loss = summary["final_loss"]
        elif kind == ev.FAILED:
            info.ended_at = event.get("ts")
            info.status = "failed"
            info.error = event.get("message")
    if info.status == "created":
        if run.is_live():
            info.status = "paused" if paused else "running"
        elif info.started_at is not None or run.pid_path.exists():
            info.status = "interrupted"
    return info


def list_runs(root: str | os.PathLike | None = None) -> list[RunInfo]:
    base = runs_root(root)
    if not base.exists():
        return []
    runs = [RunDir(p) for p in base.iterdir() if p.is_dir() and (p / CONFIG_FILE).exists()]
    return [summarize(r) for r in sorted(runs, key=lambda r: r.name, reverse=True)]
