"""What the fused loss returns to TRL's trainers when they ask for per-token metrics
(``forward(..., fused_lm_head=True)``): the output class and each row's mean logit."""

from __future__ import annotations

import functools

import torch


@torch.no_grad()
def row_mean_logits(hidden, weight, softcap, chunk: int = 1024):
    """Each row's mean logit (DPO's and ORPO's logits/* metrics) without the full logits: the mean over the
    vocabulary of h.w_v is h.mean(W), one GEMV. A soft-capped head (Gemma 2) takes it chunk by chunk."""
    if softcap is None:
        mean_row = weight.new_ones(1, weight.shape[0]) @ weight / weight.shape[0]
        return (hidden @ mean_row.to(hidden.dtype).t()).squeeze(1).float()
    w = weight.to(hidden.dtype)
    parts = [(softcap * torch.tanh((hidden[i:i + chunk] @ w.t()).float() / softcap)).mean(-1)
             for i in range(0, hidden.shape[0], chunk)]
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


@functools.cache
def fused_output_class():
    """The output of ``forward(..., fused_lm_head=True)``: the fields TRL's SFT/DPO trainers read."""
    from dataclasses import dataclass as model_output_dataclass

    from transformers.utils import ModelOutput

    @model_output_dataclass
    class FusedLMOutput(ModelOutput):
        loss: torch.Tensor | None = None
        log_probs: torch.Tensor | None = None
        entropy: torch.Tensor | None = None
        log_sum_sq_probs: torch.Tensor | None = None
        mean_logits: torch.Tensor | None = None
        is_top1: torch.Tensor | None = None
        label_mask: torch.Tensor | None = None
        aux_loss: torch.Tensor | None = None

    return FusedLMOutput
