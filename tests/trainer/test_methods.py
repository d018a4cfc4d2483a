"""DPO, ORPO and continued pretraining on a tiny model on the CPU: the objective moves the right way, the
best evaluation is marked, the adapter carries what was trained."""

from __future__ import annotations

import json

import pytest
import torch

from tests.trainer.method_data import write_pairs, write_text
from tuitune import events as ev
from tuitune.config import Config, apply_overrides
from tuitune.run_state import RunState
from tuitune.runs import RunDir
from tuitune.trainer.event_sink import ControlInbox, EventSink
from tuitune.trainer.recipes import train

pytestmark = pytest.mark.timeout(400)


def run_method(model_dir, tmp_path, name, data, **extra):
    overrides = {"model.name": str(model_dir), "data.path": str(data), "training.batch_size": 4,
                 "training.gradient_accumulation_steps": 1, "training.learning_rate": 5e-3,
                 "training.optimizer": "adamw_torch", "model.max_seq_length": 96, "training.warmup_steps": 0,
                 "training.use_kernels": False, **extra}
    config = apply_overrides(Config(), overrides)
    run = RunDir.create(tmp_path / "runs", name)
    run.write_config(config)
    summary = train(config, run, EventSink(run), ControlInbox(run))
    return run, summary, [e for e in run.events() if e["type"] == ev.STEP]


def test_pairs_train_dpo_with_no_other_setting_and_the_margin_grows(tiny_model_dir, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")
    run, summary, steps = run_method(tiny_model_dir, tmp_path, "dpo", data, **{
        "training.max_steps": 6, "data.eval_fraction": 0.25, "training.eval_steps": 3})
    assert summary["objective"] == "dpo"
    assert steps[0]["reward_margin"] == pytest.approx(0.0, abs=1e-6)  # the reference is the policy at step 0
    assert steps[-1]["reward_margin"] > steps[1]["reward_margin"] > 0
    assert steps[-1]["reward_accuracy"] == 1.0 and steps[-1]["loss"] < steps[0]["loss"]
    evals = [e for e in run.events() if e["type"] == ev.EVAL]
    assert [e["step"] for e in evals] == [3, 6] and "reward_margin" in evals[-1]
    best = json.loads((run.path / "best.json").read_text())
    assert best["step"] == 6 and (run.checkpoints_dir / "step-6" / "BEST").exists()
    state = RunState()
    state.apply_all(run.events())
    assert state.objective == "dpo" and state.best_step == 6
    # Only the adapter's own weights: no second (reference) adapter was saved.
    from safetensors.torch import load_file

    keys = load_file(str(run.adapter_dir / "adapter_model.safetensors"))
    assert keys and all(".ref." not in k for k in keys)


def test_orpo_trains_without_a_reference_and_its_loss_falls(tiny_model_dir, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")
    _, summary, steps = run_method(tiny_model_dir, tmp_path, "orpo", data, **{
        "training.max_steps": 4, "training.objective": "orpo"})
    assert summary["objective"] == "orpo"
    assert steps[-1]["loss"] < steps[0]["loss"] and steps[-1]["nll_loss"] < steps[0]["nll_loss"]
    assert steps[-1]["reward_margin"] > steps[0]["reward_margin"]


def test_orpo_through_the_fused_head_equals_trl_on_full_logits(tiny_model_dir, tmp_path):
    """tuitune's ORPO forward (per-token log-probs from the fused head) gives TRL's numbers and gradients."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    from tuitune.trainer.orpo import FusedHeadORPOTrainer
    from tuitune.trainer.preference import _pairs

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    sink = EventSink(RunDir.create(tmp_path / "runs", "pairs"))
    dataset = _pairs(str(write_pairs(tmp_path / "p.jsonl", repeat=1)), Config(), tokenizer, sink)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                             init_lora_weights=False))
    args = ORPOConfig(output_dir=str(tmp_path / "o"), per_device_train_batch_size=4, max_length=96, use_cpu=True,
                      remove_unused_columns=False, report_to="none")
    trainer = FusedHeadORPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    ours = trainer.concatenated_forward(trainer.model, batch)
    theirs = ORPOTrainer.concatenated_forward(trainer, trainer.model, batch)
    for a, b in ((ours[0], theirs[0]), (ours[1], theirs[1]), (ours[4], theirs[4])):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    grads = []
    for result in (ours, theirs):
        trainer.model.zero_grad()
        (result[0].sum() - result[1].sum() + result[4]).backward(retain_graph=True)
        grads.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.requires_grad]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_cpt_packs_text_and_saves_trained_embeddings_with_the_adapter(tiny_model_dir, tmp_path):
    data = write_text(tmp_path / "text.jsonl")
    run, summary, steps = run_method(tiny_model_dir, tmp_path, "cpt", data, **{
        "training.max_steps": 5, "training.batch_size": 2, "model.max_seq_length": 128,
        "training.embedding_learning_rate": 5e-4})
    assert summary["objective"] == "cpt"
    assert steps[-1]["loss"] < steps[0]["loss"]
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    saved = load_file(str(run.adapter_dir / "adapter_model.safetensors"))
    assert {"base_model.model.model.embed_tokens.weight", "base_model.model.lm_head.weight"} <= set(saved)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    before = base.get_input_embeddings().weight.detach().clone()
    reloaded = PeftModel.from_pretrained(base, str(run.adapter_dir))
    embeddings = reloaded.get_input_embeddings()(torch.arange(5)).detach()
    assert not torch.equal(embeddings, before[:5])  # chat and export see the trained embeddings
    torch.testing.assert_close(embeddings, saved["base_model.model.model.embed_tokens.weight"][:5])


def test_embeddings_get_their_own_learning_rate(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from tuitune.plan import Plan
    from tuitune.trainer.pretraining import embedding_modules, give_embeddings_their_rate
    from tuitune.trainer.sft import add_adapters

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    extra = embedding_modules(model)
    assert extra["modules_to_save"] == ["embed_tokens", "lm_head"] and extra["ensure_weight_tying"]
    model = add_adapters(model, Config(), Plan("cpu", "CPU", "lora", "float32", "adamw_torch", "none"), **extra)

    class Stub:
        def __init__(self, model):
            self.model = model

        def create_optimizer(self, model=None):
            return torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=2e-4)

    stub = Stub(model)
    give_embeddings_their_rate(stub, 2e-5)
    optimizer = stub.create_optimizer()
    by_lr = {group["lr"]: sum(p.numel() for p in group["params"]) for group in optimizer.param_groups}
    embedding = model.get_input_embeddings().weight.numel()
    assert by_lr[2e-5] == embedding  # tied: one trainable copy, at the lower rate
    assert by_lr[2e-4] > 0


def test_dpo_pads_its_batches_to_bucket_lengths_when_the_layers_are_graphed(tiny_model_dir, tmp_path, monkeypatch):
    """As SFT: a graph replays only a batch shape it has seen (the plan is forced to graph; a CPU has none)."""
    import dataclasses

    from transformers import PreTrainedModel

    from tuitune.trainer import sft

    resolve = sft.resolve_plan
    monkeypatch.setattr(sft, "resolve_plan", lambda *a, **k: dataclasses.replace(resolve(*a, **k), cuda_graphs=True))
    lengths = []
    forward = PreTrainedModel.__call__

    def record(self, *args, **kwargs):
        if kwargs.get("input_ids") is not None:
            lengths.append(kwargs["input_ids"].shape[1])
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "__call__", record)
    run_method(tiny_model_dir, tmp_path, "dpo-buckets", write_pairs(tmp_path / "pairs.jsonl"),
               **{"training.max_steps": 2})
    assert lengths and all(n % 96 == 0 for n in lengths), lengths
