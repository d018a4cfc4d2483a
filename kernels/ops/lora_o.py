"""One LoRA projection (attention's ``o_proj``, or any single linear) with a hand-written backward.

Saves only the input and the rank-r product ``x @ A.T``; the frozen base weight (dense or NF4,
dequantized by the Triton kernel of ``nf4_dequantize.py``) is re-read in the backward pass, never stored.

With ``replay`` (the output this call returned in an earlier pass over the same input, kept by the
caller) the forward computes nothing: it returns ``replay`` and keeps only the input, and the backward
forms the rank-r product itself. This is for the recompute pass of activation checkpointing that kept
the projection's output (tuitune.trainer.activation_checkpointing): the base GEMM of the recompute
is skipped, and the dequantization moves to the backward pass, which needs the weight anyway.
"""

from __future__ import annotations

import torch

from .lora_weights import LoRAWeights, adapters, as_2d, project, project_backward, rank_products


class LoRAOFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p: LoRAWeights, keep_dense: bool, replay, need_xa: bool, a, b):
        x2 = as_2d(x)
        ctx.p = p
        ctx.x_shape = x.shape
        if replay is not None:
            ctx.dense = None
            ctx.save_for_backward(x2, None)
            return replay.view(*x.shape[:-1], p.out_features)
        w = p.effective(x2.dtype)
        y, xa = project(x2, p, w, need_xa=need_xa)
        ctx.dense = w if keep_dense else None
        ctx.save_for_backward(x2, xa)
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, dy):
        x2, xa = ctx.saved_tensors
        p = ctx.p
        if xa is None:  # replayed: the rank-r product is formed now
            xa = rank_products(x2, (p,))[0]
        dx, d_a, d_b = project_backward(as_2d(dy), x2, xa, p, need_dx=ctx.needs_input_grad[0], w=ctx.dense)
        ctx.dense = None
        return (dx.view(ctx.x_shape) if dx is not None else None), None, None, None, None, d_a, d_b


def lora_o(x: torch.Tensor, o: LoRAWeights, *, keep_dense: bool = False,
           replay: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W.T + bias + scaling * (x @ A.T) @ B.T`` for ``x`` (..., in); returns (..., out).

    ``o`` describes the projection (``LoRAWeights``: frozen ``weight`` dense or bitsandbytes 4-bit,
    optional frozen ``bias``, adapter ``lora_a`` (r, in) / ``lora_b`` (out, r) or None, ``scaling``).
    Gradients flow to ``x``, ``lora_a`` and ``lora_b``. ``keep_dense``: as in ``lora_qkv``.
    ``replay``: this projection's output for this same ``x``, kept from an earlier pass; it is returned
    as the output (nothing is computed until the backward pass). See the module doc.
    """
    if replay is not None and replay.shape[-1] != o.out_features:
        raise ValueError(f"lora_o: replay has {replay.shape[-1]} features, the projection {o.out_features}")
    return LoRAOFunction.apply(x, o, keep_dense, replay, torch.is_grad_enabled(), *adapters(o))
