"""Starts and resumes runs: the one run lifecycle of the app, the CLI and scripts.

`start` creates the run directory and writes its config.toml once; `resume` continues a run from its
last complete checkpoint; both hand the prepared run to a `Spawn` (by default `spawn`: the trainer
in a child process, with `ProcessHandle` talking to it over two queues). UI-side module: imports
neither torch nor textual. Queues and the process are created with the real stdout/stderr in place
because Textual replaces them, and multiprocessing cannot hand Textual's to a child. Nor do the
children take this process's pipes: see `_standard_fds_off_pipes`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.process
import os
import queue as queue_module
import sys
import time
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any, Callable, Iterator

from tuitune import events as ev
from tuitune.config import Config, apply_overrides
from tuitune.distributed_plan import check_resume
from tuitune.errors import TuituneError
from tuitune.runs import RunDir, run_name
from tuitune.trainer_handle import Spawn, TrainerHandle


class ProcessHandle:
    """The trainer in a spawned child process (a TrainerHandle)."""

    def __init__(self, run_dir: RunDir, process, events_queue, controls_queue):
        self.run_dir = run_dir
        self.process = process
        self._events = events_queue
        self._controls = controls_queue
        self.finished: dict[str, Any] | None = None

    def poll(self, timeout: float = 0.0) -> list[dict[str, Any]]:
        """Every event waiting in the queue; waits up to `timeout` seconds for the first one."""
        found: list[dict[str, Any]] = []
        try:
            found.append(self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait())
        except (queue_module.Empty, OSError, EOFError, ValueError):
            return found
        while True:
            try:
                found.append(self._events.get_nowait())
            except (queue_module.Empty, OSError, EOFError, ValueError):
                break
        for event in found:
            if event.get("type") in ev.TERMINAL:
                self.finished = event
        return found

    def _send(self, command: str) -> None:
        try:
            self._controls.put(command)
        except (OSError, ValueError):
            self.run_dir.send_control(command)

    def pause(self) -> None:
        self._send(ev.PAUSE)

    def resume(self) -> None:
        self._send(ev.RESUME)

    def stop(self) -> None:
        """Stop after the current step with a final checkpoint and adapter."""
        self._send(ev.STOP)

    def save_now(self) -> None:
        self._send(ev.SAVE_NOW)

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def join(self, timeout: float | None = None) -> int | None:
        self.process.join(timeout)
        return self.process.exitcode

    def terminate(self) -> None:
        if self.process.is_alive():
            self.process.terminate()

    def detach(self, timeout: float = 120.0) -> bool:
        """Let this process exit while training goes on: multiprocessing would otherwise join the child
        at interpreter exit. The run directory (events.jsonl, controls.jsonl) keeps the link.

        Waits until the child has unpickled its queues (it then writes its pid file): once this
        process exits, the queues' named semaphores are unlinked and a child still starting would
        fail. Returns whether the child is running."""
        deadline = time.monotonic() + timeout
        while not self.run_dir.pid_path.exists() and self.process.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        multiprocessing.process._children.discard(self.process)  # noqa: SLF001
        self._events.cancel_join_thread()
        self._controls.cancel_join_thread()
        return self.process.is_alive()


@contextlib.contextmanager
def _standard_fds_off_pipes(log_path: Path) -> Iterator[None]:
    """While children start, fds 0 and 1 point at /dev/null and fd 2 at the run's log, unless a terminal.

    A spawned process inherits fds 0-2 whatever `close_fds` says. The trainer redirects its own once it
    runs, but multiprocessing's resource tracker keeps them, and it lives as long as the trainer: holding
    the write end of a pipe, it kept `tuitune train --detach | cat` (or ssh, or subprocess.run) waiting
    for the end of the run. A terminal is left alone: nobody waits for its end, and Textual draws on it
    from another thread."""
    targets = {0: (os.devnull, os.O_RDWR), 1: (os.devnull, os.O_RDWR),
               2: (str(log_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT)}
    streams = {1: sys.__stdout__, 2: sys.__stderr__}
    saved: dict[int, int] = {}
    try:
        for fd, (path, flags) in targets.items():
            if os.isatty(fd):
                continue
            try:
                saved[fd] = os.dup(fd)
            except OSError:  # closed: there is nothing to inherit
                continue
            if streams.get(fd) is not None:
                streams[fd].flush()
            target = os.open(path, flags, 0o644)
            os.dup2(target, fd)
            os.close(target)
        yield
    finally:
        for fd, original in saved.items():
            os.dup2(original, fd)
            os.close(original)


def spawn(config: Config, run_dir: RunDir, resume_from: str | None = None) -> ProcessHandle:
    """Start the trainer process on a prepared run directory (the default `Spawn`)."""
    context = multiprocessing.get_context("spawn")
    with contextlib.redirect_stderr(sys.__stderr__), contextlib.redirect_stdout(sys.__stdout__), \
            _standard_fds_off_pipes(run_dir.log_path):
        resource_tracker.ensure_running()  # the queues' semaphores would start it; start it here, off the pipes
        events_queue = context.Queue()
        controls_queue = context.Queue()
        from tuitune.trainer.child import child_main

        process = context.Process(
            target=child_main, name=f"tuitune-trainer-{run_dir.name}",
            args=(config.to_dict(), str(run_dir.path), events_queue, controls_queue, resume_from),
        )
        process.start()
    return ProcessHandle(run_dir, process, events_queue, controls_queue)


def start(config: Config, *, runs_root: str | None = None, spawn: Spawn = spawn) -> TrainerHandle:
    """A new run: its directory under `output.dir` (else `runs_root`, else the default root), its
    config.toml, then the trainer."""
    run_dir = RunDir.create(config.output.dir or runs_root, run_name(config))
    run_dir.write_config(config)
    return spawn(config, run_dir, None)



def resume(run_dir: RunDir, *, overrides: dict[str, Any] | None = None, spawn: Spawn = spawn) -> TrainerHandle:
    """Continue a stopped or interrupted run, in its own folder, from its last complete checkpoint.

    `overrides` (dotted config keys; None values ignored) change the run's config, which is then
    rewritten; refused with the reason when the run still trains or has no complete checkpoint."""
    if run_dir.is_live():
        raise TuituneError(f"Run {run_dir.name} is still training (pid {run_dir.trainer_pid()}); "
                           "open it instead of resuming it.")
    checkpoint = run_dir.last_checkpoint()
    if checkpoint is None:
        raise TuituneError(f"Run {run_dir.name} has no complete checkpoint to resume from "
                           f"({run_dir.checkpoints_dir} is empty). Start a new run instead.")
    config = run_dir.load_config()
    changed = bool(overrides) and any(value is not None for value in overrides.values())
    if changed:
        config = apply_overrides(config, overrides)
    check_resume(checkpoint, config)  # e.g. a ZeRO-3 checkpoint cannot continue on another number of GPUs
    if changed:
        run_dir.write_config(config)
    return spawn(config, run_dir, str(checkpoint))


def wait_for(handle: TrainerHandle, predicate: Callable[[dict[str, Any]], bool],
             timeout: float) -> list[dict[str, Any]]:
    """Collect events until `predicate(event)` holds for one, the child dies, or `timeout` passes."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = handle.poll(timeout=0.2)
        seen.extend(batch)
        if any(predicate(e) for e in batch):
            return seen
        if not batch and not handle.is_alive():
            seen.extend(handle.poll())
            return seen
    return seen
