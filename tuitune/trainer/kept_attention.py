"""The attention block's outputs that an offloaded checkpointed layer keeps, so that its recompute
pass runs neither the attention forward nor the output projection's base GEMM.

`query_key_value` and `output_projection`: q, k and v through `lora_qkv`, o_proj through `lora_o`;
their outputs are offered to keep in the first pass and replayed in the recompute (`replay=`), so the
recompute runs neither projection's base GEMM (`TUITUNE_KEEP_QKV=0` keeps q, k and v no more).

Causal attention (`keep_or_replay`, only with ``TUITUNE_KEEP_ATTENTION=1`` for PyTorch's flash
operator or ``=cudnn`` for cuDNN's): under offloaded checkpointing
(tuitune.trainer.activation_checkpointing) the first pass of a layer calls the operator itself
(`first_pass`), which returns, beside the output, the per-row log-sum-exp that its backward needs;
both go to the CPU with the layer's input. The recompute pass still has q, k and v (kept or computed
again: the backward needs them) but runs no attention: `replayed` returns the kept output through a
node whose backward is the same operator's backward, which is what SDPA's own path for that operator
runs. cuDNN's operator takes grouped-query keys and values repeated to the query's heads, and their
gradients are summed back. `first_pass` returns None where this does not apply (a mask, dropout, a
sliding window, soft-capping, another attention implementation, the flash operator under a cuDNN
preference, 32-bit inputs on a GPU), and the caller runs attention as before. Should the operator
ever refuse (forward or backward), that layer's attention runs again with autograd, and no layer
keeps its attention from then on.
"""

from __future__ import annotations

import logging
import os

import torch

_TAG = "attention"
_REFUSED: list[str] = []  # why the attention operator (forward or backward) refused, once it has


def _refused(e: Exception) -> None:
    """Remember why the operator refused (no layer keeps its attention from then on) and say it once."""
    reason = f"{type(e).__name__}: {e}".splitlines()[0]
    if not _REFUSED:
        logging.getLogger("tuitune").warning(
            "offloaded checkpointing: the attention operator refused a kept attention (%s); layers "
            "recompute their attention from now on, a little slower, with the same results", reason)
    _REFUSED.append(reason)


def _operator() -> str | None:
    """Which operator a kept attention runs on a GPU: ``"flash"`` (TUITUNE_KEEP_ATTENTION=1),
    ``"cudnn"`` (TUITUNE_KEEP_ATTENTION=cudnn), or None: no kept attention.

    Off unless asked for: on an H100 (2026-12-06) PyTorch's flash operator, forward and backward,
    took 34.8 ms a llama-8b step where SDPA's own choice took 25.9 ms for forward, recompute and
    backward, so keeping the output cost more than computing it again."""
    return {"1": "flash", "cudnn": "cudnn"}.get(os.environ.get("TUITUNE_KEEP_ATTENTION", "0"))


def _enabled() -> bool:
    operator = _operator()
    if operator is None or _REFUSED:
        return False
    return operator == "cudnn" or os.environ.get("TUITUNE_SDPA", "") != "cudnn"


def eligible(module, query: torch.Tensor, key: torch.Tensor, attention_mask, dropout: float, extra: dict) -> bool:
    if not _enabled() or attention_mask is not None or dropout or any(v is not None for v in extra.values()):
        return False
    if getattr(module.config, "_attn_implementation", None) != "sdpa" or not getattr(module, "is_causal", True):
        return False
    if query.shape[2] < 2 or query.shape[2] != key.shape[2] or query.shape[-1] > 256:
        return False
    if query.shape[1] % key.shape[1]:
        return False
    if query.is_cuda:
        return query.dtype in (torch.float16, torch.bfloat16)
    return query.device.type == "cpu"


def first_pass(query, key, value, scale: float) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]] | None:
    """Attention of (batch, heads, tokens, head_dim) inputs as (batch, tokens, heads, head_dim), and
    the tensors to keep for `replayed`; None when the operator refuses these inputs."""
    try:
        if query.is_cuda and _operator() == "cudnn":
            key, value = _as_many_heads(query, key), _as_many_heads(query, value)
            out, lse, cum_q, cum_k, _, _, seed, offset, _ = torch.ops.aten._scaled_dot_product_cudnn_attention(
                query, key, value, None, True, 0.0, True, False, scale=scale)
            kept = (lse, cum_q, cum_k, seed, offset)
        elif query.is_cuda:
            # Dense batches give undefined (None) sequence offsets, and without dropout the RNG state
            # may be undefined too; the backward takes them as the forward gave them.
            out, lse, cum_q, cum_k, _, _, seed, offset, _ = torch.ops.aten._scaled_dot_product_flash_attention(
                query, key, value, 0.0, True, False, scale=scale)
            kept = (lse, cum_q, cum_k, seed, offset)
        else:
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, 0.0, True,
                                                                                   scale=scale)
            kept = (lse,)
    except (RuntimeError, TypeError) as e:
        _refused(e)
        return None
    out = out.transpose(1, 2).contiguous()
    return out, (out, *kept)


def _as_many_heads(query, kv):
    """Grouped-query keys or values repeated to the query's heads (the cuDNN operator's layout)."""
    groups = query.shape[1] // kv.shape[1]
    return kv if groups == 1 else kv.repeat_interleave(groups, dim=1)


def _summed_over_groups(grad, kv):
    """The gradient of `_as_many_heads` back at ``kv``'s heads."""
    b, h, s, d = kv.shape
    return grad if grad.shape[1] == h else grad.view(b, h, grad.shape[1] // h, s, d).sum(2)


def _operator_backward(d_out, query, key, value, out, lse, rest, scale):
    if query.is_cuda and _operator() == "cudnn":
        cum_q, cum_k, seed, offset = rest
        no_bias = query.new_empty(0)
        dq, dk, dv = torch.ops.aten._scaled_dot_product_cudnn_attention_backward(
            d_out, query, _as_many_heads(query, key), _as_many_heads(query, value), out, lse, seed, offset, no_bias,
            cum_q, cum_k, query.shape[2], key.shape[2], 0.0, True, scale=scale)
        return dq, _summed_over_groups(dk, key), _summed_over_groups(dv, value)
    if query.is_cuda:
        cum_q, cum_k, seed, offset = rest
        return torch.ops.aten._scaled_dot_product_flash_attention_backward(
            d_out, query, key, value, out, lse, cum_q, cum_k, query.shape[2], key.shape[2], 0.0, True, seed, offset,
            scale=scale)
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        d_out, query, key, value, out, lse, 0.0, True, scale=scale)


def _recomputed_backward(d_out, query, key, value, scale):
    """The gradients by running attention again with autograd (SDPA picks its own kernel)."""
    q, k, v = (t.detach().requires_grad_() for t in (query, key, value))
    with torch.enable_grad():
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale,
                                                               enable_gqa=q.shape[1] != k.shape[1])
    return torch.autograd.grad(out, (q, k, v), d_out)


class _Replayed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, scale, out, lse, *rest):
        ctx.scale = scale
        ctx.save_for_backward(query, key, value, out, lse, *rest)
        return out

    @staticmethod
    def backward(ctx, d_out):
        query, key, value, out, lse, *rest = ctx.saved_tensors
        d_out, out = d_out.transpose(1, 2), out.transpose(1, 2)  # (batch, heads, tokens, head_dim)
        if d_out.stride(-1) != 1:
            d_out = d_out.contiguous()
        try:
            dq, dk, dv = _operator_backward(d_out, query, key, value, out, lse, rest, ctx.scale)
        except (RuntimeError, TypeError) as e:
            # Never lose the step: this layer's gradients come from attention run again, and later
            # layers stop keeping their attention (`eligible`).
            _refused(e)
            dq, dk, dv = _recomputed_backward(d_out, query, key, value, ctx.scale)
        return dq, dk, dv, None, None, None, *([None] * len(rest))


def replayed(query, key, value, scale: float, kept: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The kept attention output, (batch, tokens, heads, head_dim), with the operator's backward."""
    return _Replayed.apply(query, key, value, scale, *kept)


def keep_or_replay(module, query, key, value, attention_mask, dropout: float, extra: dict) -> torch.Tensor | None:
    """In a checkpointed layer's first pass, attention with its output kept; in the recompute pass,
    the kept output replayed; else None (the caller runs attention as usual)."""
    from .activation_checkpointing import keep_block_output, keeping_block_outputs, recomputing, replayed_block_output

    if recomputing():
        kept = replayed_block_output(_TAG)
        return None if kept is None else replayed(query, key, value, module.scaling, kept)
    if not keeping_block_outputs() or not eligible(module, query, key, attention_mask, dropout, extra):
        return None
    result = first_pass(query, key, value, module.scaling)
    if result is None:
        return None
    out, kept = result
    keep_block_output(_TAG, kept)
    return out


def query_key_value(x: torch.Tensor, q, k, v) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The attention's q, k and v projections (their LoRAWeights) of ``x``: in a checkpointed layer's
    first pass computed and offered to keep, in the recompute pass the kept outputs replayed."""
    from tuitune.kernels import lora_qkv

    from .activation_checkpointing import keep_block_output, keeping_block_outputs, recomputing, replayed_block_output

    if recomputing():
        kept = replayed_block_output("qkv")
        return lora_qkv(x, q, k, v, keep_dense=True, replay=None if kept is None else _split_qkv(kept, (q, k, v)))
    outs = lora_qkv(x, q, k, v)
    if keeping_block_outputs() and os.environ.get("TUITUNE_KEEP_QKV", "1") != "0":
        stacked = _one_buffer(outs)
        if stacked is not None:
            keep_block_output("qkv", (stacked,))
        elif all(t.is_contiguous() for t in outs):
            keep_block_output("qkv", outs)
    return outs


def _one_buffer(outs) -> torch.Tensor | None:
    """The (rows, q + k + v features) buffer whose column blocks q, k and v are (4-bit weights without
    autograd project into one), else None."""
    base = outs[0]._base
    if base is None or base.dim() != 2 or not base.is_contiguous() or any(t._base is not base for t in outs):
        return None
    if base.shape[1] != sum(t.shape[-1] for t in outs) or outs[0].data_ptr() != base.data_ptr():
        return None
    return base


def _split_qkv(kept: tuple[torch.Tensor, ...], ps) -> tuple[torch.Tensor, ...]:
    if len(kept) == 3:
        return kept
    (stacked,), outs, start = kept, [], 0
    for p in ps:
        outs.append(stacked[:, start:start + p.out_features])
        start += p.out_features
    return tuple(outs)


def output_projection(x: torch.Tensor, o) -> torch.Tensor:
    """The attention's output projection (``o``: its LoRAWeights) of ``x``: in a checkpointed layer's
    first pass computed and offered to keep, in the recompute pass the kept output replayed."""
    from tuitune.kernels import lora_o

    from .activation_checkpointing import keep_block_output, recomputing, replayed_block_output

    if recomputing():
        kept = replayed_block_output("o_proj")
        return lora_o(x, o, keep_dense=True, replay=None if kept is None else kept[0])
    y = lora_o(x, o)
    keep_block_output("o_proj", (y,))
    return y
