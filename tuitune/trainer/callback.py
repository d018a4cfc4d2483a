"""A transformers TrainerCallback that turns training progress into events and obeys controls."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

from tuitune import events as ev
from tuitune.runs import RunDir
from tuitune.trainer.event_sink import ControlInbox, EventSink

HF_CHECKPOINT_PREFIX = "checkpoint-"


class EventsCallback(TrainerCallback):
    def __init__(self, run: RunDir, sink: EventSink, inbox: ControlInbox, *, save_total_limit: int,
                 samples_per_step: int):
        self.run = run
        self.sink = sink
        self.inbox = inbox
        self.save_total_limit = save_total_limit
        self.samples_per_step = samples_per_step
        self.trainer = None  # set by the recipe; needed to checkpoint while paused
        self.stopped = False
        self.paused = False
        self.last_loss: float | None = None
        self._start = time.time()
        self._first_step: int | None = None
        self._last_tokens: tuple[float, int] | None = None
        self._tokens_per_s: float | None = None

    # progress -----------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.time()
        self._first_step = state.global_step
        self._last_tokens = (self._start, state.num_input_tokens_seen or 0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self._emit_step(state, logs)
        elif "eval_loss" in logs:
            self.sink.emit(ev.EVAL, step=state.global_step, eval_loss=logs["eval_loss"])

    def _emit_step(self, state, logs: dict) -> None:
        now = time.time()
        tokens = state.num_input_tokens_seen or 0
        if self._last_tokens is not None and now > self._last_tokens[0]:
            window = now - self._last_tokens[0]
            self._tokens_per_s = (tokens - self._last_tokens[1]) / window
        self._last_tokens = (now, tokens)
        done = state.global_step - (self._first_step or 0)
        elapsed = now - self._start
        remaining = max(0, state.max_steps - state.global_step)
        eta = elapsed / done * remaining if done > 0 else None
        samples_per_s = done * self.samples_per_step / elapsed if elapsed > 0 else None
        self.last_loss = float(logs["loss"])
        allocated, reserved = _gpu_memory()
        self.sink.emit(
            ev.STEP, step=state.global_step, max_steps=state.max_steps, epoch=round(state.epoch or 0.0, 4),
            loss=self.last_loss, lr=logs.get("learning_rate"), grad_norm=_float(logs.get("grad_norm")),
            tokens_per_s=self._tokens_per_s, samples_per_s=samples_per_s, tokens_seen=tokens,
            mem_allocated_gb=allocated, mem_reserved_gb=reserved, rss_gb=_rss_gb(),
            eta_s=eta, elapsed_s=elapsed,
        )

    # controls -----------------------------------------------------------------------------
    def on_step_end(self, args, state, control, **kwargs):
        self._obey(self.inbox.drain(), state, control)
        while self.paused and not self.stopped:
            time.sleep(0.2)
            self._obey(self.inbox.drain(), state, control)
        return control

    def _obey(self, commands: list[str], state, control) -> None:
        for command in commands:
            if command == ev.PAUSE and not self.paused:
                self.paused = True
                self.sink.emit(ev.PAUSED, step=state.global_step)
            elif command == ev.RESUME and self.paused:
                self.paused = False
                self.sink.emit(ev.RESUMED, step=state.global_step)
            elif command == ev.SAVE_NOW:
                if self.paused and self.trainer is not None:
                    self.save_checkpoint_now(state)
                else:
                    control.should_save = True
            elif command == ev.STOP:
                self.stopped = True
                if self.paused:
                    self.sink.emit(ev.RESUMED, step=state.global_step)
                self.paused = False
                control.should_save = True
                control.should_training_stop = True

    def save_checkpoint_now(self, state) -> None:
        trainer = self.trainer
        trainer._save_checkpoint(trainer.model, trial=None)  # the Trainer's own full checkpoint
        self.on_save(trainer.args, state, trainer.control)

    # checkpoints --------------------------------------------------------------------------
    def on_save(self, args, state, control, **kwargs):
        source = Path(args.output_dir) / f"{HF_CHECKPOINT_PREFIX}{state.global_step}"
        if not source.exists():
            return control
        target = self.run.checkpoints_dir / f"step-{state.global_step}"
        if target.exists():
            shutil.rmtree(target)
        os.replace(source, target)
        (target / "COMPLETE").write_text(json.dumps({"step": state.global_step, "ts": time.time()}))
        self.sink.emit(ev.CHECKPOINT, step=state.global_step, path=str(target))
        self._rotate()
        return control

    def _rotate(self) -> None:
        complete = self.run.checkpoints()
        for old in complete[: max(0, len(complete) - self.save_total_limit)]:
            shutil.rmtree(old, ignore_errors=True)


def _float(value):
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _gpu_memory() -> tuple[float | None, float | None]:
    import torch

    if not torch.cuda.is_available():
        return None, None
    gib = 1024 ** 3
    return torch.cuda.memory_allocated() / gib, torch.cuda.memory_reserved() / gib


def _rss_gb() -> float | None:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 1024 ** 3
    except Exception:
        return None
