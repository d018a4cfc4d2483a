"""The best evaluation's checkpoint: marked, kept by rotation, and early stopping after `patience` evals."""

from __future__ import annotations

import json

import pytest
import torch

from tuitune.runs import RunDir
from tuitune.trainer.best_checkpoint import BestTracker, read_best
from tuitune.trainer.reporting import report_targets


def test_best_is_marked_moved_and_patience_stops(tmp_path):
    run = RunDir.create(tmp_path / "runs", "best")
    tracker = BestTracker(run, patience=2)
    folders = {}
    for step in (10, 20, 30):
        folders[step] = run.checkpoints_dir / f"step-{step}"
        folders[step].mkdir(parents=True)
    assert tracker.evaluated(10, 2.0) == (True, False)
    tracker.saved(10, folders[10])
    assert tracker.evaluated(20, 1.5) == (True, False)
    tracker.saved(20, folders[20])
    assert not (folders[10] / "BEST").exists() and (folders[20] / "BEST").exists()
    assert tracker.protects(folders[20]) and not tracker.protects(folders[10])
    assert tracker.evaluated(30, 1.6) == (False, False)
    assert tracker.saved(30, folders[30]) is None  # not a best: nothing marked
    assert tracker.evaluated(40, float("nan")) == (False, False)  # a broken eval neither counts nor stops
    assert tracker.evaluated(40, 1.7) == (False, True)
    assert read_best(run.path)["step"] == 20 and tracker.checkpoint_to_restore() == folders[20]
    # A resumed run continues from the recorded best.
    again = BestTracker(run, patience=2)
    assert again.best_loss == 1.5 and again.evaluated(50, 1.55) == (False, False)
    assert json.loads((folders[20] / "BEST").read_text())["eval_loss"] == 1.5


def test_report_to_without_the_package_warns_and_logs_nowhere(tmp_path, monkeypatch):
    import importlib.util

    run = RunDir.create(tmp_path / "runs", "report")
    warnings = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert report_targets("tensorboard", run, warnings.append) == {"report_to": "none"}
    assert "pip install tensorboard" in warnings[0]
    assert report_targets("none", run, warnings.append) == {"report_to": "none"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", "restored after the test")
    fields = report_targets("tensorboard", run, warnings.append)
    assert fields["report_to"] == ["tensorboard"]
    import os

    assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(run.path / "tensorboard")


def test_early_stopping_saves_the_best_checkpoints_adapter(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tuitune.trainer.event_sink import EventSink
    from tuitune.trainer.run_loop import restore_best

    run = RunDir.create(tmp_path / "runs", "restore")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)),
                           LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    best_dir = run.checkpoints_dir / "step-2"
    model.save_pretrained(str(best_dir))  # the best weights, as the Trainer's checkpoint holds them
    kept = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(1.0)  # training went on past the best
    tracker = BestTracker(run, patience=1)
    tracker.evaluated(2, 1.0)
    tracker.saved(2, best_dir)
    assert restore_best(model, tracker, EventSink(run)) == 2
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert torch.equal(p, kept[name]), name
    assert restore_best(model, BestTracker(run, patience=0), EventSink(run)) is None  # no early stopping


def _sft_with_scripted_evals(model_dir, tmp_path, monkeypatch, name, eval_losses, **extra):
    """A short SFT run on the CPU whose evaluations reach the best tracker as `eval_losses`, in order, then the
    last one again (a tiny random model's real eval loss falls too evenly to place the best where a test
    needs it)."""
    from tuitune import events as ev
    from tuitune.config import Config, apply_overrides
    from tuitune.trainer.event_sink import ControlInbox, EventSink
    from tuitune.trainer.sft import train

    scripted = iter(eval_losses)
    real = BestTracker.evaluated
    monkeypatch.setattr(BestTracker, "evaluated",
                        lambda self, step, loss: real(self, step, next(scripted, eval_losses[-1])))
    config = apply_overrides(Config(), {
        "model.name": str(model_dir), "data.max_rows": 40, "data.eval_fraction": 0.25, "training.batch_size": 4,
        "training.gradient_accumulation_steps": 1, "training.learning_rate": 5e-3, "training.eval_steps": 2,
        "training.optimizer": "adamw_torch", "model.max_seq_length": 96, "training.warmup_steps": 0,
        "training.use_kernels": False, **extra})
    run = RunDir.create(tmp_path / "runs", name)
    run.write_config(config)
    summary = train(config, run, EventSink(run), ControlInbox(run))
    return run, summary, [e for e in run.events() if e["type"] == ev.EVAL]


@pytest.mark.timeout(400)
def test_sft_marks_a_best_final_evaluation_on_the_adapter_and_reports_it_once(tiny_model_dir, tmp_path,
                                                                            monkeypatch):
    # training.eval_steps = 0: one evaluation, after the last step, which has no checkpoint of its own.
    run, summary, evals = _sft_with_scripted_evals(tiny_model_dir, tmp_path, monkeypatch, "final-best", [1.0],
                                                   **{"training.max_steps": 3, "training.eval_steps": 0})
    assert [e["step"] for e in evals] == [3]
    best = read_best(run.path)
    assert best["step"] == 3 and best["path"] == str(run.adapter_dir) and (run.adapter_dir / "BEST").exists()
    marked = [e for e in run.events() if e["type"] == "checkpoint" and e.get("best")]
    assert [(e["step"], e["path"]) for e in marked] == [(3, str(run.adapter_dir))]
    assert summary["best_step"] == 3 and summary["adapter_from_step"] is None


@pytest.mark.timeout(400)
def test_sft_early_stopping_saves_the_best_checkpoints_adapter(tiny_model_dir, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    run, summary, evals = _sft_with_scripted_evals(tiny_model_dir, tmp_path, monkeypatch, "early-stop",
                                                   [1.0, 2.0], **{"training.max_steps": 8,
                                                                  "training.early_stopping_patience": 1})
    assert [e["step"] for e in evals] == [2, 4]  # stopped after the evaluation at 4: no other, each reported once
    assert summary["early_stopped"] and summary["steps"] == 4 and summary["adapter_from_step"] == 2
    assert read_best(run.path)["path"] == str(run.checkpoints_dir / "step-2")
    adapter = load_file(str(run.adapter_dir / "adapter_model.safetensors"))
    best = load_file(str(run.checkpoints_dir / "step-2" / "adapter_model.safetensors"))
    last = load_file(str(run.checkpoints_dir / "step-4" / "adapter_model.safetensors"))
    assert adapter.keys() == best.keys()
    assert all(torch.equal(adapter[k], best[k]) for k in best)
    assert not all(torch.equal(adapter[k], last[k]) for k in last)  # the weights of step 4 were not kept
