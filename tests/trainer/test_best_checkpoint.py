"""The best evaluation's checkpoint: marked, kept by rotation, and early stopping after `patience` evals."""

from __future__ import annotations

import json

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
    import torch
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
