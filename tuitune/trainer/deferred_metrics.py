"""SFT training whose per-step metrics stay on the GPU until a log reads them.

TRL's SFTTrainer reads four numbers back from the GPU in every step's ``compute_loss`` (the entropy,
the token accuracy, the tokens of the batch, and a ``> 0`` test on the label count), between the
forward and the backward pass; the Trainer reads one more (the tokens seen) after the backward. Each
read makes the host wait until the GPU has caught up, and the GPU then waits while the host queues
the next work. On llama-1b QLoRA (H100, 2026-12-06) the trainer's step was 88 ms against the bench's
57 ms, 31 ms of it with the GPU idle, and six reads per step (24 ms of waiting) were the largest
item of the host's profile.

Here those numbers are summed on the GPU and read once per log (one read for all of them), which is
when the Trainer reads the loss anyway. The loss, and what is logged at ``logging_steps = 1``, are
TRL's; over a longer logging window the entropy and accuracy are the window's token-weighted means
where TRL averages each step's. Anything but TRL's plain loss path (a custom loss function, label
smoothing, sequence parallelism, MoE auxiliary losses, outputs asked for, batches without an
attention mask) runs TRL's own ``compute_loss``.
"""

from __future__ import annotations

import functools

import torch

from tuitune.trainer.lagged_log import LaggedLogMixin


class GpuSums:
    """Scalars added up on the GPU between reads; ``take`` reads them (one sync) and starts over."""

    def __init__(self, size: int):
        self.size = size
        self._sum: torch.Tensor | None = None

    def add(self, *values) -> None:
        device = next((v.device for v in values if isinstance(v, torch.Tensor)), None)
        row = torch.stack([torch.as_tensor(v, device=device).to(torch.float64).reshape(()) for v in values])
        self._sum = row if self._sum is None else self._sum + row

    def take(self, accelerator) -> list[float] | None:
        """The sums over every process since the last take, or None when nothing was added anywhere.
        A collective under several processes: every rank calls it at the same point."""
        if accelerator.num_processes > 1:
            local = self._sum if self._sum is not None else torch.zeros(self.size, dtype=torch.float64,
                                                                        device=accelerator.device)
            total = accelerator.gather(local.to(accelerator.device).unsqueeze(0)).reshape(-1, self.size).sum(0)
            self._sum = None
            return total.tolist() if bool((total != 0).any()) else None
        if self._sum is None:
            return None
        total, self._sum = self._sum.tolist(), None
        return total

    def hand_over(self) -> torch.Tensor | None:
        """The sums since the last take, still on the GPU (no read), and start over."""
        total, self._sum = self._sum, None
        return total


@functools.cache
def sft_trainer_class():
    """TRL's SFTTrainer with the per-step reads deferred to the logs (see the module doc)."""
    from trl import SFTTrainer

    class DeferredMetricsSFTTrainer(LaggedLogMixin, SFTTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # per mode: label tokens, entropy sum, top-1 hits, batch tokens (TRL's num_tokens)
            self._deferred = {"train": GpuSums(4), "eval": GpuSums(4)}
            self._deferred_tokens_seen = GpuSums(1)
            self._lagged_sums: dict | None = None  # a lagged step's sums, read back (lagged_log.py)
            self._took_trls_path = False  # TRL's compute_loss appends its metrics per step: no lag then

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not _takes_the_plain_path(self, inputs, return_outputs):
                self._took_trls_path |= self.model.training
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            inputs["use_cache"] = False
            outputs = model(**inputs, fused_lm_head=True)
            per_token_loss = -outputs.log_probs  # zero on ignored positions
            if self.args.loss_type == "dft":
                per_token_loss = per_token_loss * outputs.log_probs.exp().detach()
            num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = per_token_loss.sum() / torch.as_tensor(num_tokens).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            batch_tokens = inputs["attention_mask"].sum() if mode == "train" else 0
            self._deferred[mode].add(outputs.label_mask.sum(), outputs.entropy.detach().sum(),
                                     outputs.is_top1.sum(), batch_tokens)
            return loss

        def _track_num_input_tokens(self, inputs):
            if self.args.include_num_input_tokens_seen != "non_padding" or "attention_mask" not in inputs:
                return super()._track_num_input_tokens(inputs)
            self._deferred_tokens_seen.add(inputs["attention_mask"].sum())

        def log(self, logs, start_time=None):
            self._read_deferred("train" if self.model.training else "eval")
            super().log(logs, start_time)

        def _save_checkpoint(self, model, trial):
            self._read_tokens_seen()  # the saved state's count is up to date
            super()._save_checkpoint(model, trial)

        def _lagged_parts(self):
            return {"train": (4, self._deferred["train"].hand_over()),
                    "tokens_seen": (1, self._deferred_tokens_seen.hand_over())}

        def _use_lagged_parts(self, parts):
            self._lagged_sums = parts

        def _lag_allowed(self):
            return not self._took_trls_path

        def _read_deferred(self, mode: str) -> None:
            lagged, self._lagged_sums = self._lagged_sums, None
            if lagged is not None and mode == "train":
                self._count_tokens_seen(lagged["tokens_seen"])
                sums = lagged["train"]
            else:
                self._read_tokens_seen()
                sums = self._deferred[mode].take(self.accelerator)
            if sums is None:
                return
            valid, entropy, correct, tokens = sums
            self._metrics[mode]["entropy"].append(entropy / valid if valid > 0 else 0.0)
            self._metrics[mode]["mean_token_accuracy"].append(correct / valid if valid > 0 else 0.0)
            if mode == "train":
                self._total_train_tokens += int(tokens) // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

        def _read_tokens_seen(self) -> None:
            self._count_tokens_seen(self._deferred_tokens_seen.take(self.accelerator))

        def _count_tokens_seen(self, sums: list[float] | None) -> None:
            if sums is not None:
                self.state.num_input_tokens_seen += int(sums[0])

    return DeferredMetricsSFTTrainer


def _takes_the_plain_path(trainer, inputs, return_outputs: bool) -> bool:
    """Whether TRL's compute_loss would take its plain fused-head path, which this one stands in for."""
    if return_outputs or trainer.compute_loss_func is not None or trainer.aux_loss_enabled:
        return False
    if trainer.args.loss_type not in ("nll", "dft"):  # the losses TRL 1.16's plain path knows
        return False
    if trainer.label_smoother is not None and trainer.args.loss_type == "nll":
        return False
    if "attention_mask" not in inputs:
        return False
    parallelism = getattr(trainer.accelerator, "parallelism_config", None)
    if parallelism is not None and getattr(parallelism, "sp_enabled", False):
        return False
    return all(hasattr(trainer, name) for name in ("_metrics", "_total_train_tokens", "_tp_size"))
