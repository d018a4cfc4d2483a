"""The collator finds on the CPU what the patched model would otherwise read back from the GPU at each
step's start (label rows, token ids for offloaded embeddings, no padding); results are unchanged."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.kernel_env import DEVICE, ON_GPU
from tuitune.trainer.batch_facts import (HOST_FACTS, LABEL_ROWS, BatchFactsCollator, HostFacts, add_batch_facts,
                                         host_facts_of, label_rows_of)

pytestmark = pytest.mark.timeout(300)


def _same(a, b) -> bool:
    """Equal; on a GPU within float32 rounding, where atomics in the backward kernels may add in any order."""
    if not ON_GPU or not a.is_floating_point():
        return torch.equal(a, b)
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6)


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


def test_host_facts_say_whether_the_batch_is_padded():
    ids = torch.tensor([[5, 6, 7], [8, 9, 0]])
    assert host_facts_of({"input_ids": ids}).unpadded
    assert host_facts_of({"input_ids": ids, "attention_mask": torch.ones_like(ids)}).unpadded
    padded = host_facts_of({"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])})
    assert not padded.unpadded and padded.input_ids is ids
    assert host_facts_of({"input_ids": ids.to("meta")}) is None
    assert host_facts_of({"input_ids": ids, "attention_mask": torch.ones(2, 4)}) is None
    # what lets it ride along: neither the data loader's pinning nor accelerate's device copy touches it
    from accelerate.utils import send_to_device
    from torch.utils.data._utils.pin_memory import pin_memory

    assert not hasattr(padded, "to") and not hasattr(padded, "pin_memory")
    assert send_to_device({"facts": padded}, "cpu", non_blocking=True)["facts"] is padded
    assert pin_memory({"facts": padded})["facts"] is padded
    labelled = host_facts_of({"input_ids": ids, "labels": ids})
    assert labelled.targets == 4 and labelled.rows_fit(ids[:, 1:]) and not labelled.rows_fit(ids)
    assert host_facts_of({"input_ids": ids}).targets is None


def test_the_collator_adds_the_facts_and_keeps_its_settings():
    class Pads:
        pad_token_id = 7

        def __call__(self, examples):
            return {"input_ids": torch.tensor([examples]).clamp(min=0), "labels": torch.tensor([examples])}

    collator = BatchFactsCollator(Pads())
    batch = collator([-100, 3, -100, 4])
    assert torch.equal(batch[LABEL_ROWS], torch.tensor([0, 2]))  # targets 3, -100, 4
    assert batch[HOST_FACTS].input_ids is batch["input_ids"] and batch[HOST_FACTS].unpadded
    assert batch[HOST_FACTS].targets == 3
    assert collator.pad_token_id == 7
    assert collator([5])[LABEL_ROWS].numel() == 0  # one token: nothing to predict


def _patched(padded_row: bool = True, arch: str = "llama"):
    from tests.kernels.tiny_models import batch, build_base, with_lora
    from tuitune.trainer.patching import apply_kernels

    torch.manual_seed(0)
    model = with_lora(build_base(arch, torch.float32), arch).to(DEVICE)
    assert apply_kernels(model, allow_cpu=True).replaced["causal_lm_loss"] == 1
    inputs = batch()
    if not padded_row:
        inputs["attention_mask"].fill_(1)
    return model, {k: v.to(DEVICE) for k, v in inputs.items()}


def _facts(inputs):
    """The facts of ``inputs`` (on the model's device) as the collator finds them on the CPU, the label
    rows sent on to the device as the data loader sends them."""
    on_host = {k: v.cpu() for k, v in inputs.items()}
    return {LABEL_ROWS: label_rows_of(on_host).to(DEVICE), HOST_FACTS: host_facts_of(on_host)}


def _loss_and_grads(model, inputs):
    model.zero_grad(set_to_none=True)
    out = model(**inputs, fused_lm_head=True)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return out, grads


class _Calls:
    """Counts calls of Tensor methods (and keeps calling them)."""

    def __init__(self, monkeypatch, *names):
        self.count = 0
        for name in names:
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, **kwargs):
                self.count += 1
                return _original(tensor, *args, **kwargs)
            monkeypatch.setattr(torch.Tensor, name, counted)


READS = ("nonzero", "__bool__", "item", "tolist")  # what reads a GPU tensor's values back to the host


@pytest.mark.parametrize("arch", ["llama", "gemma2", "qwen2"])  # plain, softcapped + sliding, sliding per layer
@pytest.mark.parametrize("padded_row", [True, False], ids=["padded", "unpadded"])
def test_the_facts_give_the_same_loss_and_gradients_without_a_read(monkeypatch, padded_row, arch):
    model, inputs = _patched(padded_row, arch)
    reads = _Calls(monkeypatch, *READS)
    found, found_grads = _loss_and_grads(model, inputs)
    # the label rows, and (llama: SDPA) transformers' test(s) of the mask
    assert reads.count == (3 if padded_row else 2) if arch == "llama" else reads.count >= 1
    facts = _facts(inputs)  # on the CPU, as the collator finds them
    reads.count = 0
    from transformers import masking_utils

    test = masking_utils._ignore_causal_mask_sdpa
    given, given_grads = _loss_and_grads(model, {**inputs, **facts})
    assert reads.count == 0
    assert masking_utils._ignore_causal_mask_sdpa is test  # told only while the decoder ran
    assert _same(given.loss, found.loss)
    for key in ("log_probs", "entropy", "is_top1", "mean_logits", "label_mask"):
        assert _same(getattr(given, key), getattr(found, key)), key
    assert all(_same(given_grads[n], found_grads[n]) for n in found_grads)


def test_facts_of_another_batch_are_not_used():
    model, inputs = _patched()
    found, _ = _loss_and_grads(model, inputs)
    stray = HostFacts(torch.zeros(1, 5, dtype=torch.long), unpadded=True, targets=4)  # not this batch's shape
    rows = torch.arange(4, device=DEVICE)
    given, _ = _loss_and_grads(model, {**inputs, HOST_FACTS: stray, LABEL_ROWS: rows})
    assert _same(given.loss, found.loss)
    # rows for another number of targets (a batch split after collation): found again on the device
    facts = _facts(inputs)
    split = HostFacts(facts[HOST_FACTS].input_ids, facts[HOST_FACTS].unpadded, targets=facts[HOST_FACTS].targets - 1)
    given, _ = _loss_and_grads(model, {**inputs, HOST_FACTS: split, LABEL_ROWS: rows[:3]})
    assert _same(given.loss, found.loss)
    given, _ = _loss_and_grads(model, {**inputs, LABEL_ROWS: facts[LABEL_ROWS]})  # rows without facts
    assert _same(given.loss, found.loss)


def test_facts_are_ignored_where_the_stock_head_runs():
    model, inputs = _patched()
    plain = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        logits = model(**plain).logits
        assert _same(model(**plain, **_facts(inputs)).logits, logits)


def _cpu_table_embedding(monkeypatch):
    from tuitune.trainer.embedding_offload import install_cpu_table

    torch.manual_seed(0)
    emb = torch.nn.Embedding(50, 8).requires_grad_(False)
    table = emb.weight.detach().clone()
    install_cpu_table(emb, table)
    return emb, table


def test_offloaded_embeddings_gather_with_the_handed_ids(monkeypatch):
    from tuitune.trainer.embedding_offload import handing_host_ids

    emb, table = _cpu_table_embedding(monkeypatch)
    ids = torch.tensor([[3, 1, 4], [1, 5, 9]])
    copies_back = _Calls(monkeypatch, "to")
    on_device = ids.clone()  # stands in for the GPU's copy of the ids
    with handing_host_ids(emb, ids):
        first = emb(on_device).clone()
    assert copies_back.count == 1  # only the rows' copy out to the device: the ids were not copied back
    assert torch.equal(first, table[ids])
    assert "_tuitune_host_ids" not in emb.__dict__  # used once, then gone: a later call never sees stale ids
    second = emb(torch.tensor([[2, 7]]))
    assert copies_back.count == 3 and torch.equal(second, table[torch.tensor([[2, 7]])])
    with handing_host_ids(emb, torch.tensor([[0, 0]])):  # ids of another shape are not these: copied back
        assert torch.equal(emb(ids), table[ids])


def test_offloaded_embeddings_take_turns_with_two_row_buffers(monkeypatch):
    emb, table = _cpu_table_embedding(monkeypatch)
    buffers = []
    for step in range(4):
        ids = torch.tensor([[step, step + 1]])
        assert torch.equal(emb(ids), table[ids])
        buffers.append(emb.__dict__["_tuitune_row_slots"][emb.__dict__["_tuitune_turn"]][0].data_ptr())
    assert buffers[0] == buffers[2] and buffers[1] == buffers[3] and buffers[0] != buffers[1]


def test_only_a_fused_loss_trainer_gets_the_facts():
    from types import SimpleNamespace

    from tests.kernels.tiny_models import build_base, with_lora

    patched, _ = _patched()
    trainer = SimpleNamespace(model=patched, data_collator=lambda examples: {}, args=SimpleNamespace(n_gpu=1))
    said = []
    assert add_batch_facts(trainer, said.append) and isinstance(trainer.data_collator, BatchFactsCollator)
    assert len(said) == 1 and said[0].startswith("Batch facts:")
    assert not add_batch_facts(trainer, said.append) and len(said) == 1  # not wrapped twice
    split = SimpleNamespace(model=patched, data_collator=lambda examples: {}, args=SimpleNamespace(n_gpu=2))
    assert not add_batch_facts(split)  # DataParallel would split the label rows like a batch
    stock = SimpleNamespace(model=with_lora(build_base("llama", torch.float32), "llama"),
                            data_collator=lambda examples: {}, args=SimpleNamespace(n_gpu=1))
    assert not add_batch_facts(stock) and not isinstance(stock.data_collator, BatchFactsCollator)


def _train_patched(model_dir, out, with_facts: bool, seen: list, packing: bool, window=None):
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
                     logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, seed=0, data_seed=0,
                     use_cpu=not ON_GPU, max_length=48, dataloader_num_workers=0, bf16=False, packing=packing,
                     logging_nan_inf_filter=False, include_num_input_tokens_seen="non_padding", max_grad_norm=1.0)
    trainer = sft_trainer_class()(model=AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32),
                                  args=args, train_dataset=Dataset.from_dict({"text": ROWS}),
                                  processing_class=tokenizer,
                                  peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert apply_kernels(trainer.model, allow_cpu=True).replaced["causal_lm_loss"] == 1
    if with_facts:
        assert add_batch_facts(trainer)
    base = trainer.model.get_base_model()
    forward = base.forward

    def watched(*args, **kwargs):
        seen.append((kwargs.get(LABEL_ROWS) is not None, isinstance(kwargs.get(HOST_FACTS), HostFacts)))
        return forward(*args, **kwargs)
    base.forward = watched
    if window is not None:
        from tuitune.trainer.batches_ahead import BatchesAhead

        BatchesAhead.install(trainer)
        trainer.add_callback(window)
    trainer.train()
    return [(e["loss"], e["grad_norm"], e["mean_token_accuracy"]) for e in trainer.state.log_history if "loss" in e]


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_an_sft_run_with_the_facts_logs_what_it_logs_without(tiny_model_dir, tmp_path, packing):
    with_facts, without_facts = [], []
    logs = _train_patched(tiny_model_dir, tmp_path / "facts", True, with_facts, packing)
    expected = _train_patched(tiny_model_dir, tmp_path / "plain", False, without_facts, packing)
    assert with_facts == [(True, True)] * 3 and without_facts == [(False, False)] * 3
    assert len(logs) == 3
    if ON_GPU:  # atomics in the backward kernels may add in any order
        assert [v for row in logs for v in row] == pytest.approx([v for row in expected for v in row], rel=1e-4)
    else:
        assert logs == expected


class _StepWindow:
    """A Trainer callback that counts reads to the host from the start of the second step to the start
    of the last, leaving out those of tensors that are on the host on a GPU too: the collator's, the
    sampler's, and the lagged log's pinned buffer (read once its copy is done)."""

    HOST_SIDE = {("tuitune/trainer/batch_facts.py", "__call__"), ("sampler.py", "__iter__"),
                 ("tuitune/trainer/lagged_log.py", "read")}

    def __init__(self, monkeypatch):
        import traceback

        from transformers import TrainerCallback

        self.open, self.reads = False, []
        for name in READS + ("__int__", "__float__"):
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, _name=name, **kwargs):
                if self.open:
                    frames = traceback.extract_stack()[:-1]
                    if not any(frame.filename.endswith(file) and frame.name == function
                               for frame in frames for file, function in self.HOST_SIDE):
                        self.reads.append(f"{_name} at " + " < ".join(
                            f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
                            for frame in traceback.extract_stack()[-4:-1]))
                return _original(tensor, *args, **kwargs)
            monkeypatch.setattr(torch.Tensor, name, counted)
        window = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                window.open = 1 <= state.global_step < state.max_steps - 1

            def on_train_end(self, args, state, control, **kwargs):
                window.open = False
        self.callback = Callback()


def test_a_patched_step_reads_nothing_back(tiny_model_dir, tmp_path, monkeypatch):
    window = _StepWindow(monkeypatch)
    logs = _train_patched(tiny_model_dir, tmp_path / "facts", True, [], False, window=window.callback)
    assert len(logs) == 3 and window.reads == []
