"""Cross-entropy over large vocabularies, one row block at a time and the vocabulary in chunks.

The forward kernel runs an online log-sum-exp over vocabulary chunks and writes, per row, the loss
``lse - z[label]``, ``lse``, the entropy of the softmax and whether the label is the arg-max (the
last two are metrics, without gradient). The backward kernel writes
``(softmax(z) - onehot(label)) * grad_row`` chunk by chunk, and may write it over the logits.
Optional Gemma 2 soft-capping ``z = softcap * tanh(x / softcap)`` is applied inside both kernels.
Rows whose label is ``ignore_index`` give loss 0 and gradient 0.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import cdiv, interpreted, next_pow2


@triton.jit
def _softcapped(x, softcap, HAS_SOFTCAP: tl.constexpr):
    if HAS_SOFTCAP:
        e = tl.exp(-2.0 * tl.abs(x) / softcap)
        t = (1.0 - e) / (1.0 + e)
        return softcap * tl.where(x < 0, -t, t)
    else:
        return x


@triton.jit
def _ce_fwd(X, LABELS, LOSS, LSE, ENTROPY, TOP1, n_rows, n_cols, stride_x, ignore_index, softcap,
            HAS_SOFTCAP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_V: tl.constexpr):
    pid = tl.program_id(0)
    rows = (pid * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    rmask = rows < n_rows
    labels = tl.load(LABELS + rows, mask=rmask, other=ignore_index).to(tl.int64)
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    ssum = tl.zeros([BLOCK_M], tl.float32)
    zsum = tl.zeros([BLOCK_M], tl.float32)
    for v0 in range(0, n_cols, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        cmask = cols < n_cols
        mask = rmask[:, None] & cmask[None, :]
        x = tl.load(X + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        z = tl.where(cmask[None, :], _softcapped(x, softcap, HAS_SOFTCAP), float("-inf"))
        m_new = tl.maximum(m, tl.max(z, axis=1))
        alpha = tl.exp(m - m_new)
        e = tl.exp(z - m_new[:, None])
        ssum = ssum * alpha + tl.sum(e, axis=1)
        zsum = zsum * alpha + tl.sum(e * tl.where(cmask[None, :], z, 0.0), axis=1)
        m = m_new
    lse = m + tl.log(ssum)
    valid = rmask & (labels != ignore_index)
    safe = tl.where(valid, labels, 0)
    xl = tl.load(X + rows * stride_x + safe, mask=rmask, other=0.0).to(tl.float32)
    zl = _softcapped(xl, softcap, HAS_SOFTCAP)
    tl.store(LOSS + rows, tl.where(valid, lse - zl, 0.0), mask=rmask)
    tl.store(LSE + rows, lse, mask=rmask)
    tl.store(ENTROPY + rows, tl.where(valid, lse - zsum / ssum, 0.0), mask=rmask)
    tl.store(TOP1 + rows, (valid & (zl >= m)).to(tl.int8), mask=rmask)


@triton.jit
def _ce_bwd(X, DX, LABELS, LSE, GRAD, n_rows, n_cols, stride_x, stride_dx, ignore_index, softcap,
            HAS_SOFTCAP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_V: tl.constexpr):
    pid = tl.program_id(0)
    rows = (pid * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    rmask = rows < n_rows
    labels = tl.load(LABELS + rows, mask=rmask, other=ignore_index).to(tl.int64)
    valid = rmask & (labels != ignore_index)
    lse = tl.load(LSE + rows, mask=rmask, other=0.0)
    g = tl.where(valid, tl.load(GRAD + rows, mask=rmask, other=0.0).to(tl.float32), 0.0)
    for v0 in range(0, n_cols, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        cmask = cols < n_cols
        mask = rmask[:, None] & cmask[None, :]
        x = tl.load(X + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        z = _softcapped(x, softcap, HAS_SOFTCAP)
        p = tl.exp(z - lse[:, None])
        dz = (p - tl.where(cols[None, :] == labels[:, None], 1.0, 0.0)) * g[:, None]
        if HAS_SOFTCAP:
            t = z / softcap
            dz = dz * (1.0 - t * t)
        tl.store(DX + rows[:, None] * stride_dx + cols[None, :], dz.to(DX.dtype.element_ty), mask=mask)


def _blocks(n_rows: int, n_cols: int) -> tuple[int, int]:
    if interpreted():
        block_v = min(next_pow2(n_cols), 1 << 15)
        block_m = max(1, min(next_pow2(n_rows), (1 << 17) // block_v))
    else:
        block_v = min(next_pow2(n_cols), 4096)
        block_m = 1
    return block_m, block_v


def ce_rows_forward(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, softcap: float | None):
    """Per-row ``(loss, lse, entropy, is_top1)`` for 2-D ``logits`` (rows, vocab), last dim contiguous."""
    n_rows, n_cols = logits.shape
    dev = logits.device
    loss = torch.empty(n_rows, dtype=torch.float32, device=dev)
    lse = torch.empty_like(loss)
    entropy = torch.empty_like(loss)
    top1 = torch.empty(n_rows, dtype=torch.int8, device=dev)
    block_m, block_v = _blocks(n_rows, n_cols)
    _ce_fwd[(cdiv(n_rows, block_m),)](
        logits, labels, loss, lse, entropy, top1, n_rows, n_cols, logits.stride(0), int(ignore_index),
        float(softcap or 1.0), HAS_SOFTCAP=softcap is not None, BLOCK_M=block_m, BLOCK_V=block_v)
    return loss, lse, entropy, top1.bool()


def ce_rows_backward(logits: torch.Tensor, labels: torch.Tensor, lse: torch.Tensor, grad: torch.Tensor,
                     ignore_index: int, softcap: float | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """d loss_row / d logits scaled by ``grad`` per row; ``out`` may be ``logits`` itself."""
    n_rows, n_cols = logits.shape
    dx = torch.empty_like(logits) if out is None else out
    block_m, block_v = _blocks(n_rows, n_cols)
    _ce_bwd[(cdiv(n_rows, block_m),)](
        logits, dx, labels, lse, grad.contiguous(), n_rows, n_cols, logits.stride(0), dx.stride(0),
        int(ignore_index), float(softcap or 1.0), HAS_SOFTCAP=softcap is not None,
        BLOCK_M=block_m, BLOCK_V=block_v)
    return dx


class CrossEntropyRowsFunction(torch.autograd.Function):
    """Per-row losses of 2-D logits; the reduction is left to the caller."""

    @staticmethod
    def forward(ctx, logits, labels, ignore_index, softcap):
        loss, lse, _, _ = ce_rows_forward(logits, labels, ignore_index, softcap)
        ctx.save_for_backward(logits, labels, lse)
        ctx.ignore_index, ctx.softcap = ignore_index, softcap
        return loss

    @staticmethod
    def backward(ctx, grad):
        logits, labels, lse = ctx.saved_tensors
        dx = ce_rows_backward(logits, labels, lse, grad, ctx.ignore_index, ctx.softcap)
        return dx, None, None, None


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = -100,
                  softcap: float | None = None) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (..., vocab) against ``labels`` (...) over the non-ignored rows.

    ``softcap`` applies Gemma 2's ``softcap * tanh(logits / softcap)`` first. Labels must lie in
    ``[0, vocab)`` or equal ``ignore_index``. With every row ignored the loss is 0 (not NaN).
    Returns a float32 scalar; the gradient to ``logits`` has ``logits``' dtype.
    """
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: labels {tuple(labels.shape)} do not match logits {tuple(logits.shape)}")
    x2 = logits.reshape(-1, logits.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    lab = labels.reshape(-1).contiguous()
    rows = CrossEntropyRowsFunction.apply(x2, lab, int(ignore_index), softcap)
    count = (lab != ignore_index).sum().clamp(min=1)
    return rows.sum() / count
