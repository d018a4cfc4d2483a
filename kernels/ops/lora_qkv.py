"""The q, k and v LoRA projections of one attention block from one shared input, in one Function.

The three adapters' rank-r products come from one GEMM of the shared input; the backward pass sums
the three input gradients into one buffer (the adapters' shares in one GEMM, then each base GEMM
accumulates into it) and computes every adapter's gradient from the saved rank-r products; base
weights (dense or NF4) are dequantized on the fly, one at a time.
"""

from __future__ import annotations

import torch

from .lora_weights import LoRAWeights, adapters, as_2d, project_group, project_group_backward


class LoRAQKVFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, q: LoRAWeights, k: LoRAWeights, v: LoRAWeights, keep_dense: bool, *ab):
        x2 = as_2d(x)
        lead = x.shape[:-1]
        ps = (q, k, v)
        dense = [p.dense(x2.dtype) for p in ps] if keep_dense else [None] * 3
        ys, saved = project_group(x2, ps, dense)
        ctx.dense = dense
        ctx.projections = ps
        ctx.x_shape = x.shape
        ctx.save_for_backward(x2, *saved)
        return tuple(y.view(*lead, y.shape[-1]) for y in ys)

    @staticmethod
    def backward(ctx, dq, dk, dv):
        x2, *xas = ctx.saved_tensors
        need_dx = ctx.needs_input_grad[0]
        dys = [as_2d(dy) if dy is not None else None for dy in (dq, dk, dv)]
        dx, pairs = project_group_backward(dys, x2, xas, ctx.projections, need_dx=need_dx, ws=ctx.dense)
        ctx.dense = None
        grads = [g for pair in pairs for g in pair]
        return ((dx.view(ctx.x_shape) if dx is not None else None), None, None, None, None, *grads)


def lora_qkv(x: torch.Tensor, q: LoRAWeights, k: LoRAWeights, v: LoRAWeights, *, keep_dense: bool = False):
    """The three projections of ``x`` (..., hidden): returns ``(q, k, v)``, each (..., out_i).

    Each of ``q``, ``k``, ``v`` is a ``LoRAWeights`` (see ``lora_o``); a projection without adapter
    has ``lora_a = lora_b = None``. Gradients flow to ``x`` and to every adapter tensor.
    ``keep_dense`` keeps the dequantized base weights from the forward for the backward instead of
    dequantizing them again: worth it when the backward follows at once (a checkpointed layer's
    recompute), a waste of memory otherwise.
    """
    return LoRAQKVFunction.apply(x, q, k, v, keep_dense, *adapters(q, k, v))
