"""The SFT trainer reads its per-step metrics back from the GPU once per log, and logs what TRL logs."""

from __future__ import annotations

import contextlib
import traceback

import pytest
import torch

from tuitune.trainer.deferred_metrics import GpuSums, sft_trainer_class

pytestmark = pytest.mark.timeout(300)

ROWS = [f"Row {i}: " + " ".join(["tokens"] * (5 + 3 * i)) for i in range(16)]


class _Reads:
    """Counts tensor reads to the host (``item``, ``tolist``, ``bool``) made inside the watched calls."""

    def __init__(self, monkeypatch):
        self.inside, self.count, self.where = 0, 0, []
        for name in ("item", "tolist", "__bool__"):
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(original))

    def _counting(self, original):
        def read(tensor, *args, **kwargs):
            if self.inside:
                self.count += 1
                if len(self.where) < 3:
                    self.where.append("".join(traceback.format_stack(limit=5)[:-1]))
            return original(tensor, *args, **kwargs)
        return read

    @contextlib.contextmanager
    def watching(self):
        self.inside += 1
        try:
            yield
        finally:
            self.inside -= 1

    @contextlib.contextmanager
    def paused(self):
        inside, self.inside = self.inside, 0
        try:
            yield
        finally:
            self.inside = inside

    def skip_model(self, model):
        """The model's own forward reads too (transformers' mask checks for padding): not the trainer's."""
        forward = model.forward

        def unwatched(*args, **kwargs):
            with self.paused():
                return forward(*args, **kwargs)
        model.forward = unwatched

    def watch(self, trainer, *names):
        for name in names:
            bound = getattr(trainer, name)

            def watched(*args, _bound=bound, **kwargs):
                with self.watching():
                    return _bound(*args, **kwargs)
            setattr(trainer, name, watched)


def _train(cls, model_dir, tmp_path, logging_steps: int, reads: _Reads | None = None):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    args = SFTConfig(output_dir=str(tmp_path / cls.__name__), per_device_train_batch_size=4, max_steps=4,
                     learning_rate=1e-3, logging_steps=logging_steps, save_strategy="no", report_to=[],
                     use_cpu=True, disable_tqdm=True, seed=0, data_seed=0, max_length=64,
                     include_num_input_tokens_seen="non_padding", dataloader_num_workers=0)
    trainer = cls(model=model, args=args, train_dataset=Dataset.from_dict({"text": ROWS}),
                  processing_class=tokenizer, peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    if reads is not None:
        reads.watch(trainer, "compute_loss", "_track_num_input_tokens")
        reads.skip_model(trainer.model)
    trainer.train()
    return [entry for entry in trainer.state.log_history if "loss" in entry], trainer.state.num_input_tokens_seen


def test_the_logs_are_trls_at_every_step(tiny_model_dir, tmp_path):
    from trl import SFTTrainer

    theirs, their_tokens = _train(SFTTrainer, tiny_model_dir, tmp_path, logging_steps=1)
    ours, our_tokens = _train(sft_trainer_class(), tiny_model_dir, tmp_path, logging_steps=1)
    assert len(ours) == len(theirs) == 4 and our_tokens == their_tokens > 0
    for mine, trl in zip(ours, theirs):
        for key in ("loss", "entropy", "mean_token_accuracy", "num_tokens", "num_input_tokens_seen"):
            assert mine[key] == pytest.approx(trl[key], rel=1e-5), (key, mine, trl)


def test_nothing_is_read_back_between_logs(tiny_model_dir, tmp_path, monkeypatch):
    from trl import SFTTrainer

    reads = _Reads(monkeypatch)
    _train(SFTTrainer, tiny_model_dir, tmp_path, logging_steps=2, reads=reads)
    assert reads.count >= 4 * 4  # TRL: four reads a step (the test can see them)
    reads.count, reads.where = 0, []
    ours, tokens = _train(sft_trainer_class(), tiny_model_dir, tmp_path, logging_steps=2, reads=reads)
    assert reads.count == 0, "\n".join(reads.where)
    # a window of two steps: the token-weighted means, and every token counted
    assert len(ours) == 2 and tokens == ours[-1]["num_input_tokens_seen"] > 0
    assert 0.0 <= ours[-1]["mean_token_accuracy"] <= 1.0 and ours[-1]["entropy"] > 0


def test_gpu_sums_add_up_and_start_over():
    class OneProcess:
        num_processes = 1

    sums = GpuSums(2)
    assert sums.take(OneProcess()) is None
    sums.add(torch.tensor(3), 1.5)
    sums.add(torch.tensor(4), torch.tensor(0.5))
    assert sums.take(OneProcess()) == [7.0, 2.0]
    assert sums.take(OneProcess()) is None
