"""The q, k and v LoRA projections of one attention block from one shared input, in one Function.

The backward pass sums the three input gradients into one buffer (each GEMM accumulates into it)
and computes each adapter's gradient from the saved rank-r products; base weights (dense or NF4)
are dequantized on the fly, one at a time.
"""

from __future__ import annotations

import torch

from .lora_weights import LoRAWeights, adapters, as_2d, project, project_backward


class LoRAQKVFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, q: LoRAWeights, k: LoRAWeights, v: LoRAWeights, keep_dense: bool, *ab):
        x2 = as_2d(x)
        lead = x.shape[:-1]
        outs, saved, dense = [], [], []
        for p in (q, k, v):
            w = p.dense(x2.dtype)
            y, xa = project(x2, p, w)
            outs.append(y.view(*lead, y.shape[-1]))
            saved.append(xa)
            dense.append(w if keep_dense else None)
        ctx.dense = dense
        ctx.projections = (q, k, v)
        ctx.x_shape = x.shape
        ctx.save_for_backward(x2, *saved)
        return tuple(outs)

    @staticmethod
    def backward(ctx, dq, dk, dv):
        x2, *saved = ctx.saved_tensors
        need_dx = ctx.needs_input_grad[0]
        dx = torch.empty_like(x2) if need_dx else None
        written = False
        grads: list[torch.Tensor | None] = []
        for p, dy, xa, w in zip(ctx.projections, (dq, dk, dv), saved, ctx.dense):
            if dy is None:
                grads += [None, None]
                continue
            _, d_a, d_b = project_backward(as_2d(dy), x2, xa, p, need_dx=need_dx, w=w, dx_out=dx,
                                           accumulate=written)
            written = written or need_dx
            grads += [d_a, d_b]
        ctx.dense = None
        if need_dx and not written:
            dx.zero_()
        return ((dx.view(ctx.x_shape) if need_dx else None), None, None, None, None, *grads)


def lora_qkv(x: torch.Tensor, q: LoRAWeights, k: LoRAWeights, v: LoRAWeights, *, keep_dense: bool = False):
    """The three projections of ``x`` (..., hidden): returns ``(q, k, v)``, each (..., out_i).

    Each of ``q``, ``k``, ``v`` is a ``LoRAWeights`` (see ``lora_o``); a projection without adapter
    has ``lora_a = lora_b = None``. Gradients flow to ``x`` and to every adapter tensor.
    ``keep_dense`` keeps the dequantized base weights from the forward for the backward instead of
    dequantizing them again: worth it when the backward follows at once (a checkpointed layer's
    recompute), a waste of memory otherwise.
    """
    return LoRAQKVFunction.apply(x, q, k, v, keep_dense, *adapters(q, k, v))
