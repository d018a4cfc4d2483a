"""Run directories: `<runs root>/<timestamp>-<name>/` with config, events, log, checkpoints, adapter.

Pure Python: the UI lists and opens runs, live or finished, from disk alone.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuitune import events as ev
from tuitune.errors import TuituneError
from tuitune.paths import atomic_write_text, runs_root
from tuitune.run_state import ACTIVE, RunState

CONFIG_FILE = "config.toml"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "train.log"
PID_FILE = "trainer.pid"
CONTROL_FILE = "controls.jsonl"
CHECKPOINTS = "checkpoints"
CHECKPOINT_PREFIX = "step-"            # checkpoints/step-N/
CHECKPOINT_COMPLETE = "COMPLETE"       # written last into a checkpoint: readers ignore one without it
ADAPTER = "adapter"
EXPORTS = "exports"


def slug(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-.")
    return text[:60] or "run"


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step of a checkpoint folder (checkpoints/step-N)."""
    return int(checkpoint.name.removeprefix(CHECKPOINT_PREFIX))


def run_name(config) -> str:
    """The name part of a new run's folder: `output.name`, else `<model>-<dataset>`."""
    if config.output.name:
        return config.output.name
    model = Path(config.model.name).name or "model"
    data = Path(config.data.path).stem if config.data.path else "sample"
    return f"{model}-{data}"


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

    def checkpoint_dir(self, step: int) -> Path:
        """Where the checkpoint of optimizer step `step` lives (complete once CHECKPOINT_COMPLETE is in it)."""
        return self.checkpoints_dir / f"{CHECKPOINT_PREFIX}{step}"

    def _checkpoint_dirs(self) -> list[Path]:
        if not self.checkpoints_dir.exists():
            return []
        return [p for p in self.checkpoints_dir.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints (their CHECKPOINT_COMPLETE marker written last), oldest first."""
        found = [p for p in self._checkpoint_dirs() if (p / CHECKPOINT_COMPLETE).exists()]
        return sorted(found, key=checkpoint_step)

    def incomplete_checkpoints(self) -> list[Path]:
        """Checkpoint folders without their marker: a save cut short (a kill, a full disk)."""
        return [p for p in self._checkpoint_dirs() if not (p / CHECKPOINT_COMPLETE).exists()]

    def last_checkpoint(self) -> Path | None:
        """The newest complete checkpoint, where a resumed run continues; None without one."""
        found = self.checkpoints()
        return found[-1] if found else None

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
class RunInfo(RunState):
    """A run on disk: its folder and what its events add up to."""

    name: str = ""
    path: Path = Path()


def settle_status(state: RunState, run: RunDir) -> str:
    """The status of a run whose events stop short of an end: running or paused while its trainer
    lives, failed once it is gone (killed, or its machine went down), created when it never started."""
    if state.status not in ("created", *ACTIVE):
        return state.status
    if run.is_live():
        return "paused" if state.status == "paused" else "running"
    if state.started_at is not None or run.pid_path.exists():
        return "failed"
    return "created"


def died_message(state: RunState, run: RunDir) -> str:
    """What to say of a run whose trainer ended without a final event, naming its last checkpoint."""
    at = f" at step {state.step}" if state.step else ""
    text = (f"The trainer of {run.name} ended without a final event{at} (killed, out of host "
            "memory, or its machine went down; train.log may say more).")
    checkpoint = run.last_checkpoint()
    if checkpoint is None:
        return text + " It saved no checkpoint: start the run again."
    return (text + f" Last checkpoint: {checkpoint.name} ({checkpoint}); `tuitune train --resume "
            f"{run.name}` (or Resume on the Runs screen) continues from it.")


def settle(state: RunState, run: RunDir) -> None:
    """Give `state` its settled status; a trainer that died unannounced gets `died_message`."""
    status = settle_status(state, run)
    if status == "failed" and state.status != "failed":
        state.error = died_message(state, run)
    state.status = status


def summarize(run: RunDir) -> RunInfo:
    info = RunInfo(name=run.name, path=run.path)
    info.apply_all(ev.read_jsonl(run.events_path))
    settle(info, run)
    return info


def list_runs(root: str | os.PathLike | None = None) -> list[RunInfo]:
    base = runs_root(root)
    if not base.exists():
        return []
    runs = [RunDir(p) for p in base.iterdir() if p.is_dir() and (p / CONFIG_FILE).exists()]
    return [summarize(r) for r in sorted(runs, key=lambda r: r.name, reverse=True)]
