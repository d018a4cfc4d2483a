"""One LoRA projection (attention's ``o_proj``, or any single linear) with a hand-written backward.

Saves only the input and the rank-r product ``x @ A.T``; the frozen base weight (dense or NF4,
dequantized by the Triton kernel of ``nf4_dequantize.py``) is re-read in the backward pass, never stored.
"""

from __future__ import annotations

import torch

from .lora_weights import LoRAWeights, adapters, as_2d, project, project_backward


class LoRAOFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p: LoRAWeights, keep_dense: bool, a, b):
        x2 = as_2d(x)
        w = p.dense(x2.dtype)
        y, xa = project(x2, p, w)
        ctx.dense = w if keep_dense else None
        ctx.p = p
        ctx.x_shape = x.shape
        ctx.save_for_backward(x2, xa)
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, dy):
        x2, xa = ctx.saved_tensors
        dx, d_a, d_b = project_backward(as_2d(dy), x2, xa, ctx.p, need_dx=ctx.needs_input_grad[0], w=ctx.dense)
        ctx.dense = None
        return (dx.view(ctx.x_shape) if dx is not None else None), None, None, d_a, d_b


def lora_o(x: torch.Tensor, o: LoRAWeights, *, keep_dense: bool = False) -> torch.Tensor:
    """``x @ W.T + bias + scaling * (x @ A.T) @ B.T`` for ``x`` (..., in); returns (..., out).

    ``o`` describes the projection (``LoRAWeights``: frozen ``weight`` dense or bitsandbytes 4-bit,
    optional frozen ``bias``, adapter ``lora_a`` (r, in) / ``lora_b`` (out, r) or None, ``scaling``).
    Gradients flow to ``x``, ``lora_a`` and ``lora_b``. ``keep_dense``: as in ``lora_qkv``.
    """
    return LoRAOFunction.apply(x, o, keep_dense, *adapters(o))
