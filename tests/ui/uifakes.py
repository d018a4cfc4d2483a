"""Fakes for UI tests: a trainer factory whose handles behave like tuitune.trainer.launcher's, and runs."""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path
from typing import Any

from tuitune import events as ev
from tuitune.config import Config, to_toml
from tuitune.runs import RunDir

T0 = 1_764_400_000.0  # a fixed instant, so durations and dates in snapshots never change


class FakeHandle:
    """Writes a `started` and a few `step` events at once, then stays "alive" until stopped."""

    def __init__(self, config: Config, run_dir: RunDir, *, steps: int = 3, resume_from: str | None = None):
        self.config = config
        self.run_dir = run_dir
        self.resume_from = resume_from
        self.controls: list[str] = []
        self.alive = True
        self.detached = False
        self._queue: list[dict[str, Any]] = []
        self._emit(ev.make(ev.STARTED, model=config.model.name, max_steps=10, device="cpu",
                           trainable_params=1000, total_params=100000))
        for step in range(1, steps + 1):
            self._emit(ev.make(ev.STEP, step=step, max_steps=10, loss=3.0 - 0.2 * step, lr=2e-4,
                               grad_norm=1.0, tokens_per_s=100.0, epoch=step / 10))

    def _emit(self, event: dict[str, Any]) -> None:
        self.run_dir.append_event(event)
        self._queue.append(event)

    def poll(self, timeout: float = 0.0) -> list[dict[str, Any]]:
        found, self._queue = self._queue, []
        if not found and timeout > 0:
            time.sleep(timeout)  # like the real queue's get(timeout=...): no busy loop in the reader
        return found

    def is_alive(self) -> bool:
        return self.alive

    def pause(self) -> None:
        self.controls.append(ev.PAUSE)

    def resume(self) -> None:
        self.controls.append(ev.RESUME)

    def save_now(self) -> None:
        self.controls.append(ev.SAVE_NOW)

    def stop(self) -> None:
        self.controls.append(ev.STOP)
        self._emit(ev.make(ev.FINISHED, summary={"final_loss": 2.4, "steps": 3, "stopped": True}))
        self.alive = False

    def detach(self) -> None:
        self.detached = True

    def join(self, timeout: float | None = None) -> int:
        return 0


class FakeTrainerFactory:
    """`app.trainer_factory`: records each call and returns a FakeHandle."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.handles: list[FakeHandle] = []

    def __call__(self, config: Config, run_dir: RunDir, **kwargs: Any) -> FakeHandle:
        self.calls.append({"config": config, "run_dir": run_dir, **kwargs})
        handle = FakeHandle(config, run_dir, resume_from=kwargs.get("resume_from"))
        self.handles.append(handle)
        return handle


def write_run(root: Path, name: str, events: list[dict[str, Any]], *, model: str = "smollm2-135m-instruct",
              checkpoint_steps: tuple[int, ...] = ()) -> Path:
    """A run directory as the trainer leaves it, with fixed timestamps."""
    path = root / name
    (path / "checkpoints").mkdir(parents=True)
    config = Config()
    config.model.name = model
    (path / "config.toml").write_text(to_toml(config), encoding="utf-8")
    with open(path / "events.jsonl", "w", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event) + "\n")
    for step in checkpoint_steps:
        checkpoint = path / "checkpoints" / f"step-{step}"
        checkpoint.mkdir()
        (checkpoint / "COMPLETE").write_text("")
    return path


def make_runs(root: Path) -> dict[str, Path]:
    """Three finished-looking runs: finished, failed, interrupted (with a checkpoint)."""
    def started(model: str) -> dict[str, Any]:
        return {"type": ev.STARTED, "ts": T0, "model": model, "max_steps": 60}

    def step(n: int, loss: float) -> dict[str, Any]:
        return {"type": ev.STEP, "ts": T0 + 4 * n, "step": n, "max_steps": 60, "loss": loss}

    runs = {
        "finished": write_run(root, "20251129-100000-smollm2-sample", [
            started("smollm2-135m-instruct"), step(30, 2.5), step(60, 1.9234),
            {"type": ev.FINISHED, "ts": T0 + 245, "summary": {"final_loss": 1.9234, "steps": 60}}]),
        "failed": write_run(root, "20251129-110000-llama-bad-data", [
            started("llama-3.2-1b"),
            {"type": ev.FAILED, "ts": T0 + 12, "kind": "data", "message": "data.jsonl row 7: no text"}],
            model="llama-3.2-1b"),
        "interrupted": write_run(root, "20251129-120000-qwen-chat", [
            started("qwen2.5-0.5b"), step(10, 2.8), step(20, 2.6012)],
            model="qwen2.5-0.5b", checkpoint_steps=(20,)),
    }
    return runs


async def wait_for(pilot, predicate, timeout: float = 30.0) -> None:
    """Let the app run until `predicate()` holds; generous by default for loaded CI machines."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await pilot.pause(0.05)


class QueueHandle:
    """A trainer handle fed by the test: `feed()` events, read back the controls it received."""

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir
        self.events: queue.Queue = queue.Queue()
        self.controls: list[str] = []
        self.alive = True

    def feed(self, *events: dict) -> None:
        for event in events:
            self.run_dir.append_event(event)
            self.events.put(event)

    def poll(self, timeout: float = 0.0) -> list[dict]:
        found = []
        try:
            found.append(self.events.get(timeout=timeout) if timeout > 0 else self.events.get_nowait())
        except queue.Empty:
            return found
        while True:
            try:
                found.append(self.events.get_nowait())
            except queue.Empty:
                return found

    def pause(self) -> None:
        self.controls.append("pause")

    def resume(self) -> None:
        self.controls.append("resume")

    def stop(self) -> None:
        self.controls.append("stop")

    def save_now(self) -> None:
        self.controls.append("save_now")

    def is_alive(self) -> bool:
        return self.alive
