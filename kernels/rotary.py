"""Rotary position embedding applied to q and k in one launch (the ``rotate_half`` convention).

For the first ``rotary_dim = cos.shape[-1]`` features of every head, with ``h = rotary_dim // 2``::

    y[:h] = x[:h] * cos[:h] - x[h:] * sin[:h]
    y[h:] = x[h:] * cos[h:] + x[:h] * sin[h:]

and the remaining features (Phi-3's partial rotary) pass through. One program handles one token
position: every head of q and then of k. The backward pass is the same rotation with the sine
terms swapped and negated, so one kernel serves both directions. No gradient flows to cos/sin.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import next_pow2


@triton.jit
def _rotate_heads(X, Y, b, s, n_heads, half, head_dim, sx_b, sx_h, sx_s, sy_b, sy_h, sy_s,
                  c1, c2, s1, s2, BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr,
                  BLOCK_PASS: tl.constexpr):
    heads = tl.arange(0, BLOCK_H)
    j = tl.arange(0, BLOCK_HALF)
    hmask = heads < n_heads
    mask = hmask[:, None] & (j < half)[None, :]
    xb = X + b.to(tl.int64) * sx_b + s.to(tl.int64) * sx_s + heads[:, None].to(tl.int64) * sx_h
    yb = Y + b.to(tl.int64) * sy_b + s.to(tl.int64) * sy_s + heads[:, None].to(tl.int64) * sy_h
    x1 = tl.load(xb + j[None, :], mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(xb + half + j[None, :], mask=mask, other=0.0).to(tl.float32)
    y1 = x1 * c1[None, :] - x2 * s1[None, :]
    y2 = x2 * c2[None, :] + x1 * s2[None, :]
    tl.store(yb + j[None, :], y1.to(Y.dtype.element_ty), mask=mask)
    tl.store(yb + half + j[None, :], y2.to(Y.dtype.element_ty), mask=mask)
    if BLOCK_PASS > 0:
        p = 2 * half + tl.arange(0, BLOCK_PASS)
        pmask = hmask[:, None] & (p < head_dim)[None, :]
        tl.store(yb + p[None, :], tl.load(xb + p[None, :], mask=pmask, other=0.0), mask=pmask)


@triton.jit
def _rope_kernel(Q, K, QO, KO, COS, SIN, POS, seq_len, n_qh, n_kh, half, head_dim,
                 sq_b, sq_h, sq_s, sk_b, sk_h, sk_s, sqo_b, sqo_h, sqo_s, sko_b, sko_h, sko_s,
                 sc_b, sc_s, sp_b, sp_s,
                 HAS_POS: tl.constexpr, BACKWARD: tl.constexpr, BLOCK_QH: tl.constexpr,
                 BLOCK_KH: tl.constexpr, BLOCK_HALF: tl.constexpr, BLOCK_PASS: tl.constexpr):
    pid = tl.program_id(0)
    b = pid // seq_len
    s = pid % seq_len
    if HAS_POS:
        p = tl.load(POS + b.to(tl.int64) * sp_b + s.to(tl.int64) * sp_s).to(tl.int64)
        row = p * sc_s
    else:
        row = b.to(tl.int64) * sc_b + s.to(tl.int64) * sc_s
    j = tl.arange(0, BLOCK_HALF)
    jm = j < half
    c1 = tl.load(COS + row + j, mask=jm, other=0.0).to(tl.float32)
    c2 = tl.load(COS + row + half + j, mask=jm, other=0.0).to(tl.float32)
    s1 = tl.load(SIN + row + j, mask=jm, other=0.0).to(tl.float32)
    s2 = tl.load(SIN + row + half + j, mask=jm, other=0.0).to(tl.float32)
    if BACKWARD:
        t1 = -s2
        t2 = -s1
    else:
        t1 = s1
        t2 = s2
    _rotate_heads(Q, QO, b, s, n_qh, half, head_dim, sq_b, sq_h, sq_s, sqo_b, sqo_h, sqo_s,
                  c1, c2, t1, t2, BLOCK_QH, BLOCK_HALF, BLOCK_PASS)
    _rotate_heads(K, KO, b, s, n_kh, half, head_dim, sk_b, sk_h, sk_s, sko_b, sko_h, sko_s,
                  c1, c2, t1, t2, BLOCK_KH, BLOCK_HALF, BLOCK_PASS)


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _table(cos: torch.Tensor, sin: torch.Tensor, batch: int, seq: int, has_pos: bool):
    """Returns contiguous cos/sin and their (batch, position) strides."""
    cos, sin = cos.contiguous(), sin.contiguous()
    if has_pos:
        if cos.dim() == 3:
            if cos.shape[0] != 1:
                raise ValueError("rope: with position_ids, cos/sin must be a (max_positions, rotary_dim) table")
            cos, sin = cos[0], sin[0]
        return cos, sin, 0, cos.stride(0)
    if cos.dim() == 2:
        if cos.shape[0] != seq:
            raise ValueError(f"rope: cos has {cos.shape[0]} positions, q has {seq}")
        return cos, sin, 0, cos.stride(0)
    if cos.shape[1] != seq or cos.shape[0] not in (1, batch):
        raise ValueError(f"rope: cos of shape {tuple(cos.shape)} does not fit batch {batch} x seq {seq}")
    return cos, sin, (cos.stride(0) if cos.shape[0] == batch else 0), cos.stride(1)


def rope_apply(q, k, cos, sin, position_ids, backward: bool):
    q, k = _last_dim_contiguous(q), _last_dim_contiguous(k)
    batch, n_qh, seq, head_dim = q.shape
    n_kh = k.shape[1]
    if k.shape[0] != batch or k.shape[2] != seq or k.shape[3] != head_dim:
        raise ValueError(f"rope: q {tuple(q.shape)} and k {tuple(k.shape)} do not match")
    rot = cos.shape[-1]
    if rot % 2 or rot > head_dim or sin.shape != cos.shape:
        raise ValueError(f"rope: cos/sin of shape {tuple(cos.shape)} do not fit head_dim {head_dim}")
    has_pos = position_ids is not None
    cos, sin, sc_b, sc_s = _table(cos, sin, batch, seq, has_pos)
    if has_pos:
        pos = position_ids if position_ids.dim() == 2 else position_ids.view(1, -1)
        if pos.shape[-1] != seq or pos.shape[0] not in (1, batch):
            raise ValueError(f"rope: position_ids of shape {tuple(position_ids.shape)} do not fit q")
        sp_b = pos.stride(0) if pos.shape[0] == batch else 0
        sp_s = pos.stride(1)
    else:
        pos, sp_b, sp_s = cos, 0, 0
    qo = torch.empty((batch, n_qh, seq, head_dim), dtype=q.dtype, device=q.device)
    ko = torch.empty((batch, n_kh, seq, head_dim), dtype=k.dtype, device=k.device)
    half = rot // 2
    n_pass = head_dim - rot
    _rope_kernel[(batch * seq,)](
        q, k, qo, ko, cos, sin, pos, seq, n_qh, n_kh, half, head_dim,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        qo.stride(0), qo.stride(1), qo.stride(2), ko.stride(0), ko.stride(1), ko.stride(2),
        sc_b, sc_s, sp_b, sp_s,
        HAS_POS=has_pos, BACKWARD=backward, BLOCK_QH=next_pow2(n_qh), BLOCK_KH=next_pow2(n_kh),
        BLOCK_HALF=next_pow2(half), BLOCK_PASS=(next_pow2(n_pass) if n_pass else 0))
    return qo, ko


class RoPEFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, cos, sin, position_ids):
        ctx.save_for_backward(cos, sin, position_ids)
        return rope_apply(q, k, cos, sin, position_ids, backward=False)

    @staticmethod
    def backward(ctx, dq, dk):
        cos, sin, position_ids = ctx.saved_tensors
        dq_in, dk_in = rope_apply(dq, dk, cos, sin, position_ids, backward=True)
        return dq_in, dk_in, None, None, None


def rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
         position_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``q`` (batch, q_heads, seq, head_dim) and ``k`` (batch, kv_heads, seq, head_dim).

    Without ``position_ids``, ``cos``/``sin`` give the angles of each token: shape
    (batch, seq, rotary_dim), (1, seq, rotary_dim) or (seq, rotary_dim) -- what a Hugging Face
    rotary embedding returns. With ``position_ids`` (batch, seq) (packed sequences restart at 0),
    ``cos``/``sin`` are tables indexed by position: (max_positions, rotary_dim).
    ``rotary_dim`` may be smaller than ``head_dim``; the rest passes through. q and k may be
    strided views (as after ``.view(...).transpose(1, 2)``); the outputs are new contiguous
    tensors. Gradients flow to q and k only.
    """
    if q.dim() != 4 or k.dim() != 4:
        raise ValueError(f"rope: q and k must be 4-D (batch, heads, seq, head_dim), got {tuple(q.shape)} "
                         f"and {tuple(k.shape)}")
    return RoPEFunction.apply(q, k, cos, sin, position_ids)
