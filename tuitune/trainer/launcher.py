"""Starts the trainer in a spawned child process and talks to it over two queues.

UI-side module: imports neither torch nor textual. Queues and the process are created with the real
stderr in place because Textual replaces sys.stderr, which multiprocessing cannot pass to a child.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.process
import queue as queue_module
import sys
import time
from typing import Any

from tuitune import events as ev
from tuitune.config import Config
from tuitune.runs import RunDir


class TrainerHandle:
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


def start_training(config: Config, run_dir: RunDir | None = None, *, resume_from: str | None = None,
                   name: str | None = None) -> TrainerHandle:
    """Create the run directory (unless given), write its config and start the trainer process."""
    if run_dir is None:
        run_dir = RunDir.create(config.output.dir or None, name or default_run_name(config))
    run_dir.write_config(config)
    context = multiprocessing.get_context("spawn")
    with contextlib.redirect_stderr(sys.__stderr__), contextlib.redirect_stdout(sys.__stdout__):
        events_queue = context.Queue()
        controls_queue = context.Queue()
        from tuitune.trainer.worker import worker_main

        process = context.Process(
            target=worker_main, name=f"tuitune-trainer-{run_dir.name}",
            args=(config.to_dict(), str(run_dir.path), events_queue, controls_queue, resume_from),
        )
        process.start()
    return TrainerHandle(run_dir, process, events_queue, controls_queue)


def default_run_name(config: Config) -> str:
    from pathlib import Path

    if config.output.name:
        return config.output.name
    model = Path(config.model.name).name or config.model.name
    data = Path(config.data.path).stem if config.data.path else "sample"
    return f"{model}-{data}"


def wait_for(handle: TrainerHandle, predicate, timeout: float) -> list[dict[str, Any]]:
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
