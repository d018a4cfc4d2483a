"""Real (tiny) training in-process: the loss falls, the adapter reloads exactly, resume is exact."""

from __future__ import annotations

import pytest
import torch

from tuitune import events as ev
from tuitune.config import Config, apply_overrides
from tuitune.runs import RunDir
from tuitune.trainer.event_sink import ControlInbox, EventSink
from tuitune.trainer.sft import train

pytestmark = pytest.mark.timeout(400)


def run_training(model_dir, tmp_path, name, resume_from=None, on_trained=None, **extra):
    overrides = {"model.name": str(model_dir), "training.batch_size": 4,
                 "training.gradient_accumulation_steps": 1, "training.learning_rate": 5e-3,
                 "training.optimizer": "adamw_torch", "model.max_seq_length": 96,
                 "training.warmup_steps": 2, "training.use_kernels": False, **extra}
    config = apply_overrides(Config(), overrides)
    run = RunDir.create(tmp_path / "runs", name)
    run.write_config(config)
    summary = train(config, run, EventSink(run), ControlInbox(run), resume_from=resume_from,
                    on_trained=on_trained)
    losses = {e["step"]: e["loss"] for e in run.events() if e["type"] == ev.STEP}
    return run, summary, losses


PROBE = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def test_loss_falls_and_adapter_reloads_with_same_logits(tiny_model_dir, tmp_path):
    captured = {}

    def keep_logits(model, tokenizer):
        model.eval()
        ids = tokenizer(PROBE, return_tensors="pt").input_ids
        with torch.no_grad():
            captured["logits"] = model(input_ids=ids).logits.float()
        captured["ids"] = ids

    run, summary, losses = run_training(tiny_model_dir, tmp_path, "falls", on_trained=keep_logits,
                                        **{"training.max_steps": 30})
    steps = sorted(losses)
    assert len(steps) == 30
    first = sum(losses[s] for s in steps[:5]) / 5
    last = sum(losses[s] for s in steps[-5:]) / 5
    # A random 2-layer model with frozen random embeddings learns slowly (the embedded model's demo run
    # is measured in NOTES.md, "Demo on the 2-core CPU"). Here the loss must still clearly fall.
    assert last < first - 0.3, (first, last)

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    reloaded = PeftModel.from_pretrained(base, str(run.adapter_dir)).eval()
    with torch.no_grad():
        logits = reloaded(input_ids=captured["ids"]).logits.float()
    assert torch.equal(logits, captured["logits"]) or (logits - captured["logits"]).abs().max() < 1e-5


def test_resume_from_checkpoint_reproduces_the_losses(tiny_model_dir, tmp_path):
    extra = {"training.max_steps": 6, "training.save_steps": 3, "training.seed": 11}
    run, _, straight = run_training(tiny_model_dir, tmp_path, "straight", **extra)
    checkpoint = run.checkpoints_dir / "step-3"
    assert (checkpoint / "COMPLETE").exists()
    _, summary, resumed = run_training(tiny_model_dir, tmp_path, "resumed", resume_from=str(checkpoint), **extra)
    assert sorted(resumed) == [4, 5, 6] and summary["steps"] == 6
    for step in (4, 5, 6):
        assert resumed[step] == pytest.approx(straight[step], abs=1e-5), step


def test_a_run_that_graphs_its_layers_pads_batches_to_bucket_lengths(tiny_model_dir, tmp_path, monkeypatch):
    """Graphs replay only batch shapes they have seen: when the plan graphs the layers, the SFT collator
    pads every batch to a multiple of the bucket length (here the whole max length, 96 < 256)."""
    import dataclasses

    from tuitune.trainer import sft

    resolve = sft.resolve_plan
    monkeypatch.setattr(sft, "resolve_plan", lambda *a, **k: dataclasses.replace(resolve(*a, **k), cuda_graphs=True))
    lengths = []
    from transformers import PreTrainedModel

    forward = PreTrainedModel.__call__

    def record(self, *args, **kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None:
            lengths.append(ids.shape[1])
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "__call__", record)
    _, _, losses = run_training(tiny_model_dir, tmp_path, "buckets", **{"training.max_steps": 3})
    assert losses and lengths and set(lengths) == {96}, lengths
