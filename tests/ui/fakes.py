"""Fakes for UI tests: a trainer (a `Spawn` whose handles are fed by the test) and run directories."""

from __future__ import annotations

import json
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuitune import events as ev
from tuitune.config import Config, to_toml
from tuitune.runs import RunDir

T0 = 1_764_400_000.0  # a fixed instant, so durations and dates in snapshots never change


class FakeHandle:
    """A TrainerHandle the test drives: `feed()` events (also appended to events.jsonl, as the trainer
    does); controls are recorded; `stop()` ends the run with a stopped `finished` event."""

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir
        self.events: queue.Queue = queue.Queue()
        self.controls: list[str] = []
        self.alive = True
        self.detached = False
        self.finished: dict[str, Any] | None = None

    def feed(self, *events: dict[str, Any]) -> None:
        for event in events:
            self.run_dir.append_event(event)
            self.events.put(event)
            if event["type"] in ev.TERMINAL:
                self.finished = event

    def poll(self, timeout: float = 0.0) -> list[dict[str, Any]]:
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
        self.controls.append(ev.PAUSE)

    def resume(self) -> None:
        self.controls.append(ev.RESUME)

    def save_now(self) -> None:
        self.controls.append(ev.SAVE_NOW)

    def stop(self) -> None:
        self.controls.append(ev.STOP)
        self.feed(ev.make(ev.FINISHED, summary={"final_loss": 2.4, "steps": 3, "stopped": True}))
        self.alive = False

    def is_alive(self) -> bool:
        return self.alive

    def join(self, timeout: float | None = None) -> int | None:
        return None if self.alive else 0

    def terminate(self) -> None:
        self.alive = False

    def detach(self) -> bool:
        self.detached = True
        return self.alive


@dataclass
class SpawnCall:
    config: Config
    run_dir: RunDir
    resume_from: str | None


class FakeTrainer:
    """A `Spawn` (the app's `spawn_trainer`): records each call; its handle has already reported
    `started` and `steps` steps of a 10-step run."""

    def __init__(self, steps: int = 3) -> None:
        self.steps = steps
        self.calls: list[SpawnCall] = []
        self.handles: list[FakeHandle] = []

    def __call__(self, config: Config, run_dir: RunDir, resume_from: str | None = None) -> FakeHandle:
        self.calls.append(SpawnCall(config, run_dir, resume_from))
        handle = FakeHandle(run_dir)
        handle.feed(ev.make(ev.STARTED, model=config.model.name, max_steps=10, device="cpu",
                            trainable_params=1000, total_params=100000))
        handle.feed(*[ev.make(ev.STEP, step=step, max_steps=10, loss=3.0 - 0.2 * step, lr=2e-4, grad_norm=1.0,
                              tokens_per_s=100.0, epoch=step / 10) for step in range(1, self.steps + 1)])
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
    """Three runs no trainer works on: finished, failed (its trainer said so), and died: events that stop
    at step 20 with no final one and no live trainer, which settles as failed, naming its checkpoint."""
    def started(model: str) -> dict[str, Any]:
        return {"type": ev.STARTED, "ts": T0, "model": model, "max_steps": 60}

    def step(n: int, loss: float) -> dict[str, Any]:
        return {"type": ev.STEP, "ts": T0 + 4 * n, "step": n, "max_steps": 60, "loss": loss}

    return {
        "finished": write_run(root, "20251129-100000-smollm2-sample", [
            started("smollm2-135m-instruct"), step(30, 2.5), step(60, 1.9234),
            {"type": ev.FINISHED, "ts": T0 + 245, "summary": {"final_loss": 1.9234, "steps": 60}}]),
        "failed": write_run(root, "20251129-110000-llama-bad-data", [
            started("llama-3.2-1b"),
            {"type": ev.FAILED, "ts": T0 + 12, "kind": "data", "message": "data.jsonl row 7: no text"}],
            model="llama-3.2-1b"),
        "died": write_run(root, "20251129-120000-qwen-chat", [
            started("qwen2.5-0.5b"), step(10, 2.8), step(20, 2.6012)],
            model="qwen2.5-0.5b", checkpoint_steps=(20,)),
    }


class FakeChatEngine:
    """A chat engine (tuitune.chat.engines.ChatEngine) that streams fixed words. With `hold` set to a
    threading.Event, it stops after the first word until the test sets it (an answer mid-stream)."""

    name = "fake"

    def __init__(self, target: Any, *, has_adapter: bool = True, hold: Any = None) -> None:
        self.target = target
        self.has_adapter = has_adapter
        self.description = f"{target.label} (fake engine)"
        self.hold = hold
        self.calls: list[dict[str, Any]] = []

    def words(self, side: str) -> list[str]:
        return ["Paris", " is", " the", " capital."] if side == "base" else ["Ahoy!", " Paris", " it", " be."]

    def stream(self, messages, settings, *, use_adapter=True, stop_event=None, side="tuned"):
        from tuitune.chat import Finished, GenerationStats, TextDelta

        self.calls.append({"messages": list(messages), "settings": settings, "use_adapter": use_adapter,
                           "side": side})
        pieces: list[str] = []
        for word in self.words(side):
            if stop_event is not None and stop_event.is_set():
                break
            pieces.append(word)
            yield TextDelta(word, side)
            if self.hold is not None and len(pieces) == 1:
                self.hold.wait(30)
        stopped = stop_event is not None and stop_event.is_set()
        stats = GenerationStats(new_tokens=len(pieces), seconds=0.5, first_token_s=0.01,
                                stop_reason="stopped" if stopped else "eos", prompt_tokens=12, engine=self.name)
        yield Finished("".join(pieces).strip(), stats, side)

    def compare(self, messages, settings, *, stop_event=None):
        yield from self.stream(messages, settings, use_adapter=False, stop_event=stop_event, side="base")
        yield from self.stream(messages, settings, stop_event=stop_event, side="tuned")


class FakeChatEngines:
    """The app's `open_chat_engine`: records each target and hands out FakeChatEngines."""

    def __init__(self, *, has_adapter: bool = True, hold: Any = None) -> None:
        self.has_adapter = has_adapter
        self.hold = hold
        self.engines: list[FakeChatEngine] = []

    def __call__(self, target: Any) -> FakeChatEngine:
        engine = FakeChatEngine(target, has_adapter=self.has_adapter and target.has_adapter, hold=self.hold)
        self.engines.append(engine)
        return engine


class FakeExportHandle:
    """An ExportHandle the test feeds with the child's messages (progress, done, failed)."""

    def __init__(self, request: Any, log_path: Path) -> None:
        self.request = request
        self.log_path = log_path
        self.messages: queue.Queue = queue.Queue()
        self.cancelled = False

    def feed(self, *messages: dict[str, Any]) -> None:
        for message in messages:
            self.messages.put(message)

    def poll(self, timeout: float = 0.0) -> list[dict[str, Any]]:
        found = []
        try:
            found.append(self.messages.get(timeout=timeout) if timeout else self.messages.get_nowait())
            while True:
                found.append(self.messages.get_nowait())
        except queue.Empty:
            return found

    def is_alive(self) -> bool:
        return not self.cancelled

    def cancel(self) -> None:
        self.cancelled = True


class FakeExports:
    """The app's `start_export`: records each request and hands out FakeExportHandles."""

    def __init__(self) -> None:
        self.handles: list[FakeExportHandle] = []

    def __call__(self, request: Any, log_path: Path) -> FakeExportHandle:
        handle = FakeExportHandle(request, log_path)
        self.handles.append(handle)
        return handle


def export_result(path: Path, **changes: Any) -> dict[str, Any]:
    """What a finished gguf q8_0 export reports (ExportResult.to_dict), with fixed numbers."""
    result = {"format": "gguf", "quant": "q8_0", "path": str(path), "main_file": str(path / "run-q8_0.gguf"),
              "size_bytes": 144_800_000, "seconds": 27.8, "files": ["Modelfile", "README.md", "export.json",
                                                                     "run-q8_0.gguf"],
              "checks": ["chat template and EOS '<|im_end|>' identical in the GGUF metadata",
                         "Modelfile stops at <|im_end|>"],
              "answers": {"tuned model": "The capital of France is Paris.",
                          "export": "The capital of France is Paris."},
              "prompt": "What is the capital of France?", "pushed_url": None}
    result.update(changes)
    return result
