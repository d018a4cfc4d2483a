"""What a fused LoRA projection needs to know about one linear layer, as plain tensors.

``y = x @ W.T + bias + scaling * (x @ A.T) @ B.T`` with ``W`` frozen (a dense tensor or a
bitsandbytes ``Params4bit``, dequantized on the fly and never kept), ``bias`` frozen or None, and
the adapter ``A`` (r, in), ``B`` (out, r) trainable (or both None: a projection without adapter).
This module knows nothing about PEFT; the trainer's patcher reads PEFT layers into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .nf4 import base_weight


@dataclass(frozen=True)
class LoRAWeights:
    weight: torch.Tensor
    bias: torch.Tensor | None = None
    lora_a: torch.Tensor | None = None
    lora_b: torch.Tensor | None = None
    scaling: float = 1.0

    @property
    def out_features(self) -> int:
        qs = getattr(self.weight, "quant_state", None)
        return int(qs.shape[0]) if qs is not None else int(self.weight.shape[0])

    def dense(self, dtype: torch.dtype) -> torch.Tensor:
        return base_weight(self.weight, dtype)


def project(x2: torch.Tensor, p: LoRAWeights):
    """Forward of one projection on 2-D ``x2``; returns ``(y, x @ A.T or None)``.

    The adapter path runs in the adapter's dtype (as PEFT does), the base path in ``x2``'s dtype.
    """
    y = x2 @ p.dense(x2.dtype).t()
    if p.bias is not None:
        y = y + p.bias.to(y.dtype)
    xa = None
    if p.lora_a is not None:
        xl = x2.to(p.lora_a.dtype)
        xa = xl @ p.lora_a.t()
        y = y + ((xa @ p.lora_b.t()) * p.scaling).to(y.dtype)
    return y, xa


def project_backward(dy: torch.Tensor, x2: torch.Tensor | None, xa: torch.Tensor | None, p: LoRAWeights,
                     need_dx: bool = True):
    """Gradients of one projection: ``(dx or None, dA or None, dB or None)``.

    ``x2`` is the projection's input (needed only for dA); ``xa`` the saved ``x @ A.T``.
    """
    dx = dy @ p.dense(dy.dtype) if need_dx else None
    if p.lora_a is None:
        return dx, None, None
    dyl = dy.to(p.lora_b.dtype)
    dyb = dyl @ p.lora_b  # (N, r)
    d_b = (dyl.t() @ xa) * p.scaling
    d_a = (dyb.t() @ x2.to(p.lora_a.dtype)) * p.scaling
    if need_dx:
        dx = dx + ((dyb @ p.lora_a) * p.scaling).to(dx.dtype)
    return dx, d_a, d_b


def adapters(*projections: LoRAWeights) -> list[torch.Tensor | None]:
    """The A, B tensors of each projection, flattened, for ``autograd.Function.apply``."""
    out: list[torch.Tensor | None] = []
    for p in projections:
        out += [p.lora_a, p.lora_b]
    return out


def as_2d(x: torch.Tensor) -> torch.Tensor:
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.is_contiguous() else x2.contiguous()
