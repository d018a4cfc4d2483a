"""The q, k and v LoRA projections of one attention block from one shared input, in one Function.

The three adapters' rank-r products come from one GEMM of the shared input; the backward pass sums
the three input gradients into one buffer (the adapters' shares in one GEMM, then each base GEMM
accumulates into it) and computes every adapter's gradient from the saved rank-r products; base
weights (dense or NF4) are dequantized on the fly (see ``lora_qkv`` for when into one stacked buffer).
"""

from __future__ import annotations

import torch

from .lora_weights import (LoRAWeights, adapters, as_2d, project_group, project_group_backward, row_blocks,
                           stacked_dense)


class LoRAQKVFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, q: LoRAWeights, k: LoRAWeights, v: LoRAWeights, keep_dense: bool, stack: bool, *ab):
        x2 = as_2d(x)
        lead = x.shape[:-1]
        ps = (q, k, v)
        stacked = stacked_dense(ps, x2.dtype) if stack else None
        if stacked is not None:
            dense = row_blocks(stacked, ps)
        else:
            dense = [p.dense(x2.dtype) for p in ps] if keep_dense else [None] * 3
        ys, saved = project_group(x2, ps, dense, stacked=stacked)
        ctx.dense = dense if keep_dense else [None] * 3
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
        return ((dx.view(ctx.x_shape) if dx is not None else None), None, None, None, None, None, *grads)


def lora_qkv(x: torch.Tensor, q: LoRAWeights, k: LoRAWeights, v: LoRAWeights, *, keep_dense: bool = False):
    """The three projections of ``x`` (..., hidden): returns ``(q, k, v)``, each (..., out_i).

    Each of ``q``, ``k``, ``v`` is a ``LoRAWeights`` (see ``lora_o``); a projection without adapter
    has ``lora_a = lora_b = None``. Gradients flow to ``x`` and to every adapter tensor.
    ``keep_dense`` keeps the dequantized base weights from the forward for the backward instead of
    dequantizing them again: worth it when the backward follows at once (a checkpointed layer's
    recompute), a waste of memory otherwise.

    4-bit base weights are dequantized into one stacked buffer and projected by one base GEMM (q, k and
    v are then column blocks of one output) when the outputs live only as long as the layer's own
    pass: under recomputation (``keep_dense``) or without autograd. A layer whose activations are kept
    for the whole step keeps separate outputs: a saved v would otherwise keep q and k's columns too.
    """
    stack = keep_dense or not torch.is_grad_enabled()
    return LoRAQKVFunction.apply(x, q, k, v, keep_dense, stack, *adapters(q, k, v))
