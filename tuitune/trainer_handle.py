"""TrainerHandle: what the app, the CLI and the test fakes drive, whatever runs the trainer.

tuitune.trainer.launcher's ProcessHandle is the real one (a spawned child process and two queues);
tests give the app a fake through the same `Spawn` signature.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

from tuitune.config import Config
from tuitune.runs import RunDir


@runtime_checkable
class TrainerHandle(Protocol):
    """A trainer at work on one run directory: its events come out, controls go in."""

    run_dir: RunDir
    finished: dict[str, Any] | None  # the `finished` or `failed` event, once poll() has returned it

    def poll(self, timeout: float = 0.0) -> list[dict[str, Any]]:
        """Every event waiting; waits up to `timeout` seconds for the first one."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def stop(self) -> None:
        """Stop after the current step with a final checkpoint and adapter."""
        ...

    def save_now(self) -> None: ...

    def is_alive(self) -> bool: ...

    def join(self, timeout: float | None = None) -> int | None:
        """Wait for the trainer to end; its exit code (None while it still runs)."""
        ...

    def terminate(self) -> None: ...

    def detach(self) -> bool:
        """Let this process exit while training goes on; whether the trainer is running."""
        ...


Spawn = Callable[[Config, RunDir, "str | None"], TrainerHandle]
"""Starts a trainer on a prepared run directory, resuming from the checkpoint path when one is given."""
