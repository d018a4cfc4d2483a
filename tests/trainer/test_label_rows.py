"""The collator finds the label rows on the CPU; the fused loss then reads no count back from the GPU."""

from __future__ import annotations

import pytest
import torch

from tuitune.trainer.label_rows import LABEL_ROWS, LabelRowsCollator, add_label_rows, label_rows_of

pytestmark = pytest.mark.timeout(300)


def _expected(target):
    return torch.tensor([i for i, label in enumerate(target.reshape(-1).tolist()) if label != -100])


def test_rows_are_the_shifted_labels_that_count():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [7, 8, 9, -100, -100]])
    assert torch.equal(label_rows_of({"labels": labels}), _expected(labels[:, 1:]))
    shift = torch.tensor([[1, -100, 3], [-100, -100, 4]])
    assert torch.equal(label_rows_of({"labels": labels, "shift_labels": shift}), _expected(shift))


def test_no_rows_without_cpu_labels():
    assert label_rows_of({"input_ids": torch.ones(2, 3)}) is None
    assert label_rows_of({"labels": torch.ones(2, 3, device="meta")}) is None
    assert label_rows_of({"labels": torch.ones(6)}) is None  # not (batch, length): not the causal-LM loss's


def test_the_collator_adds_rows_and_keeps_its_settings():
    class Pads:
        pad_token_id = 7

        def __call__(self, examples):
            return {"labels": torch.tensor([examples])}

    collator = LabelRowsCollator(Pads())
    batch = collator([-100, 3, -100, 4])
    assert torch.equal(batch[LABEL_ROWS], torch.tensor([0, 2]))  # targets 3, -100, 4
    assert collator.pad_token_id == 7
    assert collator([5])[LABEL_ROWS].numel() == 0  # one token: nothing to predict


def _patched_pair(tmp_path):
    from tests.kernels.tiny_models import batch, build_base, with_lora
    from tuitune.trainer.patching import apply_kernels

    torch.manual_seed(0)
    model = with_lora(build_base("llama", torch.float32), "llama")
    assert apply_kernels(model, allow_cpu=True).replaced["causal_lm_loss"] == 1
    return model, batch()


def _loss_and_grads(model, inputs):
    model.zero_grad(set_to_none=True)
    out = model(**inputs, fused_lm_head=True)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return out, grads


def test_given_rows_give_the_same_loss_without_a_nonzero(tmp_path, monkeypatch):
    model, inputs = _patched_pair(tmp_path)
    found, found_grads = _loss_and_grads(model, inputs)
    rows = label_rows_of(inputs)  # on the CPU, as the collator finds them
    calls = []
    original = torch.Tensor.nonzero
    monkeypatch.setattr(torch.Tensor, "nonzero", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    given, given_grads = _loss_and_grads(model, {**inputs, LABEL_ROWS: rows})
    assert calls == []
    assert torch.equal(given.loss, found.loss)
    for key in ("log_probs", "entropy", "is_top1", "mean_logits", "label_mask"):
        assert torch.equal(getattr(given, key), getattr(found, key)), key
    assert all(torch.equal(given_grads[n], found_grads[n]) for n in found_grads)


def test_rows_are_ignored_where_the_stock_head_runs(tmp_path):
    model, inputs = _patched_pair(tmp_path)
    plain = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(model(**plain, label_rows=label_rows_of(inputs)).logits, model(**plain).logits)


def test_only_a_fused_loss_trainer_gets_the_rows(tmp_path):
    from types import SimpleNamespace

    from tests.kernels.tiny_models import build_base, with_lora

    patched, _ = _patched_pair(tmp_path)
    trainer = SimpleNamespace(model=patched, data_collator=lambda examples: {})
    assert add_label_rows(trainer) and isinstance(trainer.data_collator, LabelRowsCollator)
    assert not add_label_rows(trainer)  # not wrapped twice
    stock = SimpleNamespace(model=with_lora(build_base("llama", torch.float32), "llama"),
                            data_collator=lambda examples: {})
    assert not add_label_rows(stock) and not isinstance(stock.data_collator, LabelRowsCollator)


def _train_patched(model_dir, out, with_rows: bool, seen: list):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    from tests.trainer.test_deferred_metrics import ROWS
    from tuitune.trainer.deferred_metrics import sft_trainer_class
    from tuitune.trainer.patching import apply_kernels

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=4, max_steps=3, learning_rate=1e-3,
                     logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
                     data_seed=0, max_length=48, dataloader_num_workers=0, bf16=False)
    trainer = sft_trainer_class()(model=AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32), args=args,
                                  train_dataset=Dataset.from_dict({"text": ROWS}), processing_class=tokenizer,
                                  peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert apply_kernels(trainer.model, allow_cpu=True).replaced["causal_lm_loss"] == 1
    if with_rows:
        assert add_label_rows(trainer)
    base = trainer.model.get_base_model()
    forward = base.forward

    def watched(*args, **kwargs):
        seen.append(kwargs.get(LABEL_ROWS) is not None)
        return forward(*args, **kwargs)
    base.forward = watched
    trainer.train()
    return [(e["loss"], e["grad_norm"], e["mean_token_accuracy"]) for e in trainer.state.log_history if "loss" in e]


def test_an_sft_run_with_rows_logs_what_it_logs_without(tiny_model_dir, tmp_path):
    with_rows, without_rows = [], []
    logs = _train_patched(tiny_model_dir, tmp_path / "rows", True, with_rows)
    expected = _train_patched(tiny_model_dir, tmp_path / "plain", False, without_rows)
    assert with_rows == [True] * 3 and without_rows == [False] * 3
    assert logs == expected and len(logs) == 3
