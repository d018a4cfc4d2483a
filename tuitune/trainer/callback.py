"""A transformers TrainerCallback that turns training progress into events and obeys controls."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from transformers import TrainerCallback

from tuitune import events as ev
from tuitune.runs import CHECKPOINT_COMPLETE, RunDir
from tuitune.trainer.best_checkpoint import BestTracker
from tuitune.trainer.event_sink import ControlInbox, EventSink

HF_CHECKPOINT_PREFIX = "checkpoint-"
# What the preference trainers log beside the loss (TRL's names) -> the field of a step/eval event.
METHOD_METRICS = {"rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
                  "rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy",
                  "nll_loss": "nll_loss"}


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
        # A fault that stopped training (a loss that is not a number): {what, value, step}.
        self.fault: dict | None = None
        self.early_stopped = False
        self.stop_signal: str | None = None   # SIGTERM/SIGINT that asked for the stop
        self._signalled: int | None = None
        self._previous_handlers: dict[int, object] = {}
        self.best = BestTracker(run)  # the recipe sets best.patience from training.early_stopping_patience

    # progress -----------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.time()
        self._first_step = state.global_step
        self._last_tokens = (self._start, state.num_input_tokens_seen or 0)
        self._catch_signals()

    def on_train_end(self, args, state, control, **kwargs):
        self.restore_signals()
        self._report_graphs(kwargs.get("model"))

    def _report_graphs(self, model) -> None:
        """What became of the layers' CUDA graphs: how many were captured, or why they stopped."""
        if model is None:
            return
        from tuitune.trainer.activation_checkpointing import layer_graphs

        graphs = layer_graphs(model)
        if graphs is None:
            return
        if graphs.failed:
            self.sink.warning(f"CUDA graphs of the layers stopped: {graphs.describe()}. Training went on "
                              "without them; set training.cuda_graphs = off to skip the attempt.")
        else:
            self.sink.log(f"CUDA graphs of the layers: {graphs.describe()}.")

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self._emit_step(state, logs)
            self._check_finite(state, control, logs)
        elif "eval_loss" in logs:
            self.sink.emit(ev.EVAL, step=state.global_step, eval_loss=logs["eval_loss"],
                           **_method_metrics(logs, "eval_"))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        """A new best evaluation gets a checkpoint (kept by rotation); patience exhausted stops the run."""
        best, exhausted = self.best.evaluated(state.global_step, _float((metrics or {}).get("eval_loss")))
        if best:
            control.should_save = True
        if exhausted and not control.should_training_stop:
            self.sink.warning(f"Early stopping at step {state.global_step}: no lower eval loss in "
                              f"{self.best.bad_evals} evaluation(s); the best was {self.best.best_loss:.4f} "
                              f"at step {self.best.best_step}.")
            self.early_stopped = True
            control.should_training_stop = True
            control.should_save = True
        return control

    def _check_finite(self, state, control, logs: dict) -> None:
        """A loss or gradient norm that is not finite spoils the weights: stop, and save nothing."""
        for what in ("loss", "grad_norm"):
            value = _float(logs.get(what))
            if value is not None and not math.isfinite(value) and self.fault is None:
                self.fault = {"what": "loss" if what == "loss" else "gradient norm", "value": value,
                              "step": state.global_step}
                self.sink.warning(f"The {self.fault['what']} is {value} at step {state.global_step}: "
                                  "stopping without saving these weights.")
        if self.fault is not None:
            control.should_training_stop = True
            control.should_save = False

    def _emit_step(self, state, logs: dict) -> None:
        now = getattr(self.trainer, "log_clock", None) or time.time()  # a lagged log's own step time
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
        loss = _float(logs["loss"])
        finite = loss is not None and math.isfinite(loss)
        if finite:
            self.last_loss = loss
        allocated, reserved = _gpu_memory()
        self.sink.emit(
            ev.STEP, step=state.global_step, max_steps=state.max_steps, epoch=round(state.epoch or 0.0, 4),
            loss=loss if finite else None, lr=logs.get("learning_rate"), grad_norm=_float(logs.get("grad_norm")),
            tokens_per_s=self._tokens_per_s, samples_per_s=samples_per_s, tokens_seen=tokens,
            mem_allocated_gb=allocated, mem_reserved_gb=reserved, rss_gb=_rss_gb(),
            eta_s=eta, elapsed_s=elapsed, **_method_metrics(logs),
        )

    # controls -----------------------------------------------------------------------------
    def on_step_end(self, args, state, control, **kwargs):
        self._obey(self.inbox.drain() + self._signal_commands(state), state, control)
        while self.paused and not self.stopped:
            time.sleep(0.2)
            self._obey(self.inbox.drain() + self._signal_commands(state), state, control)
        return control

    # signals: SIGTERM or SIGINT sent to the trainer stops it after the step, with a checkpoint;
    # a second one stops it at once.
    def _catch_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self._previous_handlers:
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def restore_signals(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum, frame) -> None:
        if self._signalled is not None:
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} received twice")
        self._signalled = signum

    def _signal_commands(self, state) -> list[str]:
        if self._signalled is None or self.stop_signal is not None:
            return []
        self.stop_signal = signal.Signals(self._signalled).name
        self.sink.warning(f"{self.stop_signal} received: stopping after step {state.global_step} "
                          "with a checkpoint (send it again to stop at once).")
        return [ev.STOP]

    def _obey(self, commands: list[str], state, control) -> None:
        for command in commands:
            if command == ev.PAUSE and not self.paused:
                flush = getattr(self.trainer, "flush_lagged_log", None)
                if flush is not None:
                    flush()  # the step before this one, logged one step late (lagged_log.py)
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
        """Promote the Trainer's checkpoint to checkpoints/step-N, marked COMPLETE last. One whose
        weights are not finite is thrown away: the previous checkpoint stays the newest."""
        source = Path(args.output_dir) / f"{HF_CHECKPOINT_PREFIX}{state.global_step}"
        if not source.exists():
            return control
        if not self._weights_finite():
            shutil.rmtree(source, ignore_errors=True)
            if self.fault is None:
                self.fault = {"what": "adapter weights", "value": math.nan, "step": state.global_step}
            control.should_training_stop = True
            return control
        target = self.run.checkpoint_dir(state.global_step)
        staging = target.with_name(f".{target.name}.partial")
        try:
            shutil.rmtree(staging, ignore_errors=True)
            os.replace(source, staging)
            marker = staging / f"{CHECKPOINT_COMPLETE}.tmp"
            marker.write_text(json.dumps({"step": state.global_step, "ts": time.time()}))
            os.replace(marker, staging / CHECKPOINT_COMPLETE)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(source, ignore_errors=True)
            raise
        best = self.best.saved(state.global_step, target)
        extra = {"best": True, "eval_loss": best["eval_loss"]} if best else {}
        self.sink.emit(ev.CHECKPOINT, step=state.global_step, path=str(target), **extra)
        self._rotate()
        return control

    def _weights_finite(self) -> bool:
        model = getattr(self.trainer, "model", None)
        if model is None:
            return True
        import torch

        with torch.no_grad():
            return all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.requires_grad)

    def _rotate(self) -> None:
        complete = [c for c in self.run.checkpoints() if not self.best.protects(c)]
        for old in complete[: max(0, len(complete) - self.save_total_limit)]:
            shutil.rmtree(old, ignore_errors=True)


def _method_metrics(logs: dict, prefix: str = "") -> dict:
    """Rewards, margins and accuracies (DPO, ORPO) and ORPO's NLL part, under the events' names."""
    found = {}
    for key, name in METHOD_METRICS.items():
        value = _float(logs.get(prefix + key))
        if value is not None:
            found[name] = value
    return found


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
