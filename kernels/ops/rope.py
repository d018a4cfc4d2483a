"""Rotary position embedding applied to q and k in one launch (the ``rotate_half`` convention).

For the first ``rotary_dim = cos.shape[-1]`` features of every head, with ``h = rotary_dim // 2``::

    y[:h] = x[:h] * cos[:h] - x[h:] * sin[:h]
    y[h:] = x[h:] * cos[h:] + x[:h] * sin[h:]

and the remaining features (Phi-3's partial rotary) pass through. One program handles a block of
token positions: every head of q and then of k, as a 2-D tile whose rows are (token, head) pairs. The backward pass is the same rotation with the sine
terms swapped and negated, so one kernel serves both directions. No gradient flows to cos/sin.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import cdiv, next_pow2, tile_elements


@triton.jit
def _rotate_block(X, Y, COS, SIN, POS, t0, n_tokens, seq_len, n_heads, half, head_dim,
                  sx_b, sx_h, sx_s, sy_b, sy_h, sy_s, sc_b, sc_s, sp_b, sp_s,
                  HAS_POS: tl.constexpr, BACKWARD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr,
                  BLOCK_HALF: tl.constexpr, BLOCK_PASS: tl.constexpr):
    # rows of the tile are (token, head) pairs: BLOCK_T tokens times BLOCK_H heads
    r = tl.arange(0, BLOCK_T * BLOCK_H)
    t = (t0 + r // BLOCK_H).to(tl.int64)
    h = (r % BLOCK_H).to(tl.int64)
    rmask = (t < n_tokens) & (h < n_heads)
    b = t // seq_len
    s = t % seq_len
    if HAS_POS:
        p = tl.load(POS + b * sp_b + s * sp_s, mask=rmask, other=0).to(tl.int64)
        crow = p * sc_s
    else:
        crow = b * sc_b + s * sc_s
    j = tl.arange(0, BLOCK_HALF)
    mask = rmask[:, None] & (j < half)[None, :]
    c1 = tl.load(COS + crow[:, None] + j[None, :], mask=mask, other=0.0).to(tl.float32)
    c2 = tl.load(COS + crow[:, None] + half + j[None, :], mask=mask, other=0.0).to(tl.float32)
    s1 = tl.load(SIN + crow[:, None] + j[None, :], mask=mask, other=0.0).to(tl.float32)
    s2 = tl.load(SIN + crow[:, None] + half + j[None, :], mask=mask, other=0.0).to(tl.float32)
    if BACKWARD:
        t1 = -s2
        t2 = -s1
    else:
        t1 = s1
        t2 = s2
    xb = X + b * sx_b + s * sx_s + h * sx_h
    yb = Y + b * sy_b + s * sy_s + h * sy_h
    x1 = tl.load(xb[:, None] + j[None, :], mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(xb[:, None] + half + j[None, :], mask=mask, other=0.0).to(tl.float32)
    tl.store(yb[:, None] + j[None, :], (x1 * c1 - x2 * t1).to(Y.dtype.element_ty), mask=mask)
    tl.store(yb[:, None] + half + j[None, :], (x2 * c2 + x1 * t2).to(Y.dtype.element_ty), mask=mask)
    if BLOCK_PASS > 0:
        q = 2 * half + tl.arange(0, BLOCK_PASS)
        pmask = rmask[:, None] & (q < head_dim)[None, :]
        tl.store(yb[:, None] + q[None, :], tl.load(xb[:, None] + q[None, :], mask=pmask, other=0.0), mask=pmask)


@triton.jit
def _rope_kernel(Q, K, QO, KO, COS, SIN, POS, n_tokens, seq_len, n_qh, n_kh, half, head_dim,
                 sq_b, sq_h, sq_s, sk_b, sk_h, sk_s, sqo_b, sqo_h, sqo_s, sko_b, sko_h, sko_s,
                 sc_b, sc_s, sp_b, sp_s,
                 HAS_POS: tl.constexpr, BACKWARD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_QH: tl.constexpr,
                 BLOCK_KH: tl.constexpr, BLOCK_HALF: tl.constexpr, BLOCK_PASS: tl.constexpr):
    t0 = tl.program_id(0) * BLOCK_T
    _rotate_block(Q, QO, COS, SIN, POS, t0, n_tokens, seq_len, n_qh, half, head_dim,
                  sq_b, sq_h, sq_s, sqo_b, sqo_h, sqo_s, sc_b, sc_s, sp_b, sp_s,
                  HAS_POS, BACKWARD, BLOCK_T, BLOCK_QH, BLOCK_HALF, BLOCK_PASS)
    _rotate_block(K, KO, COS, SIN, POS, t0, n_tokens, seq_len, n_kh, half, head_dim,
                  sk_b, sk_h, sk_s, sko_b, sko_h, sko_s, sc_b, sc_s, sp_b, sp_s,
                  HAS_POS, BACKWARD, BLOCK_T, BLOCK_KH, BLOCK_HALF, BLOCK_PASS)


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
    n_tokens = batch * seq
    block_qh, block_half = next_pow2(n_qh), next_pow2(half)
    per_token = block_qh * max(block_half, next_pow2(n_pass) if n_pass else 1)
    block_t = max(1, min(next_pow2(n_tokens), tile_elements() // per_token))
    _rope_kernel[(cdiv(n_tokens, block_t),)](
        q, k, qo, ko, cos, sin, pos, n_tokens, seq, n_qh, n_kh, half, head_dim,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        qo.stride(0), qo.stride(1), qo.stride(2), ko.stride(0), ko.stride(1), ko.stride(2),
        sc_b, sc_s, sp_b, sp_s,
        HAS_POS=has_pos, BACKWARD=backward, BLOCK_T=block_t, BLOCK_QH=block_qh, BLOCK_KH=next_pow2(n_kh),
        BLOCK_HALF=block_half, BLOCK_PASS=(next_pow2(n_pass) if n_pass else 0))
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
