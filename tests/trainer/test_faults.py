"""Faults during training, on the CPU: out of GPU memory (simulated), a loss that is not a number,
SIGTERM to the trainer, and a disk that fills up while a checkpoint is written. Each stops the run
without losing what was trained and says what happened and what to change."""

from __future__ import annotations

import errno
import os
import queue
import signal

import pytest
import torch
import transformers

from tuitune import catalog, events as ev
from tuitune.config import Config, apply_overrides
from tuitune.plan import Plan
from tuitune.runs import RunDir
from tuitune.trainer import faults
from tuitune.trainer.event_sink import ControlInbox, EventSink
from tuitune.trainer.deferred_metrics import sft_trainer_class
from tuitune.trainer.faults import TrainingFault, fitting_settings
from tuitune.trainer.sft import train

pytestmark = pytest.mark.timeout(400)


def tiny(model_dir, **extra) -> Config:
    return apply_overrides(Config(), {
        "model.name": str(model_dir), "training.batch_size": 4, "training.gradient_accumulation_steps": 1,
        "training.learning_rate": 5e-3, "training.optimizer": "adamw_torch", "model.max_seq_length": 96,
        "training.warmup_steps": 2, "training.use_kernels": False, **extra})


def run_training(config: Config, tmp_path, name: str, resume_from=None):
    run = RunDir.create(tmp_path / "runs", name)
    run.write_config(config)
    return run, lambda: train(config, run, EventSink(run), ControlInbox(run), resume_from=resume_from)


def fail_on_call(monkeypatch, owner, name: str, call: int, action):
    """Replace owner.name so that its `call`-th call runs `action(self, ...)` instead."""
    real = getattr(owner, name)
    count = [0]

    def wrapper(self, *args, **kwargs):
        count[0] += 1
        if count[0] == call:
            return action(self, real, *args, **kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


def test_out_of_memory_saves_the_finished_steps_and_names_settings_that_fit(tiny_model_dir, tmp_path,
                                                                           monkeypatch):
    config = tiny(tiny_model_dir, **{"training.max_steps": 10})
    spec = catalog.spec_from_config(tiny_model_dir, name="tiny")
    plan = Plan("cuda", "GPU", "lora", "bfloat16", "adamw_torch", "standard")
    # A GPU too small for batch 4 but not for smaller batches, by tuitune's own estimate.
    total = next(gb / 1000 for gb in range(1, 100_000)
                 if fitting_settings(spec, config, plan, gb / 1000)[1])
    now, options = fitting_settings(spec, config, plan, total)
    assert options and now > total * 0.9
    monkeypatch.setattr(faults, "gpu_total_gb", lambda: total)
    monkeypatch.setattr("tuitune.trainer.sft.resolve_plan",
                        lambda config, facts: Plan("cpu", "CPU", "lora", "float32", "adamw_torch", "standard"))

    def out_of_memory(self, real, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    fail_on_call(monkeypatch, transformers.Trainer, "training_step", 3, out_of_memory)
    run, start = run_training(config, tmp_path, "oom")
    with pytest.raises(TrainingFault) as info:
        start()
    fault = info.value
    assert fault.kind == "oom"
    assert "ran out of memory in step 3 (CUDA out of memory. Tried to allocate 2.00 GiB)" in fault.message
    assert [p.name for p in run.checkpoints()] == ["step-2"] and fault.checkpoint.endswith("step-2")
    assert f"The finished steps were saved: {run.checkpoints_dir / 'step-2'}" in fault.message
    first = options[0][0].split()
    assert "Settings that fit: --set " + " --set ".join(first) in fault.advice
    assert f"tuitune train --resume {run.name} --set ..." in fault.advice
    assert fault.event_fields()["kind"] == "oom"


def test_a_loss_that_is_not_a_number_keeps_the_last_good_checkpoint(tiny_model_dir, tmp_path,
                                                                  monkeypatch):
    config = tiny(tiny_model_dir, **{"training.max_steps": 8, "training.save_steps": 2,
                                     "training.learning_rate": 2e-3})
    trainer_class = sft_trainer_class()  # the SFT trainer tuitune builds
    real = trainer_class.compute_loss

    def spoilt(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        if self.state.global_step >= 3:  # the loss of step 4 onwards
            if isinstance(result, tuple):
                return (result[0] * float("nan"),) + tuple(result[1:])
            return result * float("nan")
        return result

    monkeypatch.setattr(trainer_class, "compute_loss", spoilt)
    run, start = run_training(config, tmp_path, "nan")
    with pytest.raises(TrainingFault) as info:
        start()
    fault = info.value
    assert fault.kind == "nan"
    assert "The loss became not a number at step 4" in fault.message
    assert [p.name for p in run.checkpoints()] == ["step-2"]
    assert f"The last good checkpoint, {run.checkpoints_dir / 'step-2'}, is kept" in fault.message
    assert "Likely causes: the learning rate 0.002 is high for LoRA" in fault.advice
    assert not run.adapter_dir.exists()
    events = run.events()
    steps = {e["step"]: e["loss"] for e in events if e["type"] == ev.STEP}
    assert steps[3] is not None and steps[4] is None and 5 not in steps
    assert [e["step"] for e in events if e["type"] == ev.CHECKPOINT] == [2]
    warning = [e["text"] for e in events if e["type"] == ev.WARNING and "nan" in e["text"]]
    assert warning and "stopping without saving these weights" in warning[0]
    weights = torch.load(next((run.checkpoints_dir / "step-2").glob("optimizer.pt")), weights_only=True)
    assert weights  # the kept checkpoint is readable


def test_sigterm_to_the_trainer_stops_it_after_the_step_with_a_checkpoint(tiny_model_dir, tmp_path,
                                                                          monkeypatch):
    config = tiny(tiny_model_dir, **{"training.max_steps": 50})
    before = signal.getsignal(signal.SIGTERM)

    def terminate(self, real, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *args, **kwargs)

    fail_on_call(monkeypatch, transformers.Trainer, "training_step", 2, terminate)
    run, start = run_training(config, tmp_path, "sigterm")
    summary = start()
    assert summary["stopped"] is True and summary["stop_signal"] == "SIGTERM"
    assert summary["steps"] == 2
    assert [p.name for p in run.checkpoints()] == ["step-2"] and run.adapter_dir.exists()
    texts = [e["text"] for e in run.events() if e["type"] == ev.WARNING]
    assert any("SIGTERM received: stopping after step 2 with a checkpoint" in t for t in texts)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_full_disk_while_checkpointing_leaves_the_previous_checkpoint(tiny_model_dir, tmp_path,
                                                                        monkeypatch):
    config = tiny(tiny_model_dir, **{"training.max_steps": 6, "training.save_steps": 2})

    def disk_full(self, real, model, trial=None, *args, **kwargs):
        partial = os.path.join(self.args.output_dir, f"checkpoint-{self.state.global_step}")
        os.makedirs(partial, exist_ok=True)
        with open(os.path.join(partial, "adapter_model.safetensors"), "wb") as handle:
            handle.write(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    fail_on_call(monkeypatch, transformers.Trainer, "_save_checkpoint", 2, disk_full)
    run, start = run_training(config, tmp_path, "full")
    with pytest.raises(TrainingFault) as info:
        start()
    fault = info.value
    step2 = run.checkpoints_dir / "step-2"
    assert fault.kind == "disk_full"
    assert "The disk filled up while writing the run at step 4" in fault.message
    assert "No space left on device" in fault.message
    assert f"The previous checkpoint {step2} is intact" in fault.message
    assert "Free space on the disk of" in fault.advice and f"--resume {run.name}" in fault.advice
    assert run.checkpoints() == [step2] and (step2 / "adapter_model.safetensors").stat().st_size > 1000
    assert not list((run.path / ".hf").glob("checkpoint-*"))
    assert not list(run.checkpoints_dir.glob(".step-*"))


def test_events_still_reach_the_ui_when_the_events_file_cannot_be_written(tmp_path, monkeypatch):
    run = RunDir.create(tmp_path / "runs", "sink")
    outbox = queue.Queue()
    sink = EventSink(run, outbox)

    def no_space(event):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run, "append_event", no_space)
    event = sink.emit(ev.STEP, step=1, loss=2.0)
    assert outbox.get_nowait() == event
    assert sink.write_error is not None and "No space left" in sink.write_error
    warning = outbox.get_nowait()  # said once, for the UI's toast
    assert warning["type"] == ev.WARNING and warning["notify"] is True
    assert "Cannot write" in warning["text"] and "No space left on device" in warning["text"]
    sink.emit(ev.STEP, step=1.5, loss=2.0)
    assert outbox.get_nowait()["step"] == 1.5 and outbox.empty()
    monkeypatch.undo()
    sink.emit(ev.STEP, step=2, loss=1.0)
    assert [e["step"] for e in run.events() if e["type"] == ev.STEP] == [2]
    assert sink.write_error is None
