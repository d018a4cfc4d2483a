"""The q, k and v LoRA projections of one attention block from one shared input, in one Function.

The three adapters' rank-r products come from one GEMM of the shared input; the backward pass sums
the three input gradients into one buffer (the adapters' shares in one GEMM, then each base GEMM
accumulates into it) and computes every adapter's gradient from the saved rank-r products; base
weights (dense or NF4) are dequantized on the fly (see ``lora_qkv`` for when into one stacked buffer).

With ``replay`` (the outputs this call returned in an earlier pass over the same input, kept by the
caller) the forward computes nothing: it returns them and keeps only the input, and the backward forms
the rank-r products itself. This is for the recompute pass of activation checkpointing that kept the
projections' outputs (tuitune.trainer.activation_checkpointing): the base GEMM of the recompute is
skipped, and the dequantization moves to the backward pass, which needs the weights anyway.
"""

from __future__ import annotations

import torch

from .lora_weights import (LoRAWeights, adapters, as_2d, project_group, project_group_backward, rank_products,
                           row_blocks, stacked_dense)


def _dense_weights(ps, dtype: torch.dtype, stack: bool, keep_dense: bool):
    """``(stacked buffer or None, each projection's effective weight or None)``: 4-bit weights
    dequantized (merged with their adapters where they merge: ``LoRAWeights.effective``) into one stacked
    buffer when ``stack`` allows it, else each formed now (``keep_dense``) or where it is used (None)."""
    stacked = stacked_dense(ps, dtype) if stack else None
    if stacked is not None:
        return stacked, row_blocks(stacked, ps)
    return None, ([p.effective(dtype) for p in ps] if keep_dense else [None] * len(ps))


class LoRAQKVFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, q: LoRAWeights, k: LoRAWeights, v: LoRAWeights, keep_dense: bool, stack: bool, replay,
                need_xa: bool, *ab):
        x2 = as_2d(x)
        lead = x.shape[:-1]
        ps = (q, k, v)
        ctx.projections = ps
        ctx.x_shape = x.shape
        if replay is not None:
            ctx.dense, ctx.stack = None, stack
            ctx.save_for_backward(x2)
            return tuple(y.view(*lead, y.shape[-1]) for y in replay)
        stacked, dense = _dense_weights(ps, x2.dtype, stack, keep_dense)
        ys, saved = project_group(x2, ps, dense, stacked=stacked, need_xa=need_xa)
        ctx.dense = dense if keep_dense else [None] * 3
        ctx.save_for_backward(x2, *(saved if need_xa else ()))  # without autograd no backward runs
        return tuple(y.view(*lead, y.shape[-1]) for y in ys)

    @staticmethod
    def backward(ctx, dq, dk, dv):
        x2, *xas = ctx.saved_tensors
        ps, ws = ctx.projections, ctx.dense
        if not xas:  # replayed: the rank-r products and the dense weights are formed now
            xas = rank_products(x2, ps)
            _, ws = _dense_weights(ps, x2.dtype, ctx.stack, keep_dense=False)
        need_dx = ctx.needs_input_grad[0]
        dys = [as_2d(dy) if dy is not None else None for dy in (dq, dk, dv)]
        dx, pairs = project_group_backward(dys, x2, xas, ps, need_dx=need_dx, ws=ws)
        ctx.dense = None
        grads = [g for pair in pairs for g in pair]
        return ((dx.view(ctx.x_shape) if dx is not None else None), None, None, None, None, None, None, None,
                *grads)


def lora_qkv(x: torch.Tensor, q: LoRAWeights, k: LoRAWeights, v: LoRAWeights, *, keep_dense: bool = False,
             replay: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
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

    ``replay``: the three outputs of this call for this same ``x``, kept from an earlier pass; they are
    returned as the outputs (nothing is computed until the backward pass). See the module doc.
    """
    if replay is not None:
        for name, y, p in zip("qkv", replay, (q, k, v)):
            if y.shape[-1] != p.out_features:
                raise ValueError(f"lora_qkv: replay's {name} has {y.shape[-1]} features, "
                                 f"the projection {p.out_features}")
    stack = keep_dense or not torch.is_grad_enabled()
    return LoRAQKVFunction.apply(x, q, k, v, keep_dense, stack, replay, torch.is_grad_enabled(),
                                 *adapters(q, k, v))
