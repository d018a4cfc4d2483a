"""The q, k and v LoRA projections of one attention block from one shared input, in one Function.

The backward pass sums the three input gradients into one buffer and computes each adapter's
gradient from the saved rank-r products; base weights (dense or NF4) are dequantized on the fly.
"""

from __future__ import annotations

import torch

from .lora_weights import LoRAWeights, adapters, as_2d, project, project_backward


class LoRAQKVFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, q: LoRAWeights, k: LoRAWeights, v: LoRAWeights, *ab):
        x2 = as_2d(x)
        lead = x.shape[:-1]
        outs, saved = [], []
        for p in (q, k, v):
            y, xa = project(x2, p)
            outs.append(y.view(*lead, y.shape[-1]))
            saved.append(xa)
        ctx.projections = (q, k, v)
        ctx.x_shape = x.shape
        ctx.save_for_backward(x2, *saved)
        return tuple(outs)

    @staticmethod
    def backward(ctx, dq, dk, dv):
        x2, *saved = ctx.saved_tensors
        need_dx = ctx.needs_input_grad[0]
        dx = None
        grads: list[torch.Tensor | None] = []
        for p, dy, xa in zip(ctx.projections, (dq, dk, dv), saved):
            if dy is None:
                grads += [None, None]
                continue
            dxi, d_a, d_b = project_backward(as_2d(dy), x2, xa, p, need_dx=need_dx)
            if need_dx:
                dx = dxi if dx is None else dx.add_(dxi)
            grads += [d_a, d_b]
        return ((dx.view(ctx.x_shape) if dx is not None else None), None, None, None, *grads)


def lora_qkv(x: torch.Tensor, q: LoRAWeights, k: LoRAWeights, v: LoRAWeights):
    """The three projections of ``x`` (..., hidden): returns ``(q, k, v)``, each (..., out_i).

    Each of ``q``, ``k``, ``v`` is a ``LoRAWeights`` (see ``lora_o``); a projection without adapter
    has ``lora_a = lora_b = None``. Gradients flow to ``x`` and to every adapter tensor.
    """
    return LoRAQKVFunction.apply(x, q, k, v, *adapters(q, k, v))
