"""RMSNorm: ``y = x / sqrt(mean(x^2) + eps) * (weight + offset)`` over the last dimension.

``offset=1.0`` gives Gemma's ``1 + weight`` form. The statistics and the product are computed in
float32 and rounded once to the input dtype. The backward pass recomputes the normalised input from
the saved per-row reciprocal RMS and reduces the weight gradient into per-program partial sums.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import as_rows, cdiv, next_pow2, reduction_programs, rows_per_tile


@triton.jit
def _rms_norm_fwd(X, W, Y, RSTD, n_rows, n_cols, stride_x, stride_y, eps, offset,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    rows = (pid * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    rmask = rows < n_rows
    cmask = cols < n_cols
    mask = rmask[:, None] & cmask[None, :]
    x = tl.load(X + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / n_cols + eps)
    w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32) + offset
    y = x * rstd[:, None] * w[None, :]
    tl.store(Y + rows[:, None] * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)
    tl.store(RSTD + rows, rstd, mask=rmask)


@triton.jit
def _rms_norm_bwd(DY, X, W, RSTD, DX, DW_PART, n_rows, n_cols, rows_per_prog,
                  stride_dy, stride_x, stride_dx, offset,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    cmask = cols < n_cols
    w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32) + offset
    dw = tl.zeros([BLOCK_N], dtype=tl.float32)
    start = pid * rows_per_prog
    for i in range(0, rows_per_prog, BLOCK_M):
        rows = (start + i + tl.arange(0, BLOCK_M)).to(tl.int64)
        rmask = rows < n_rows
        mask = rmask[:, None] & cmask[None, :]
        x = tl.load(X + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + rows[:, None] * stride_dy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + rows, mask=rmask, other=0.0)
        xhat = x * rstd[:, None]
        wdy = dy * w[None, :]
        c = tl.sum(wdy * xhat, axis=1) / n_cols
        dx = (wdy - xhat * c[:, None]) * rstd[:, None]
        tl.store(DX + rows[:, None] * stride_dx + cols[None, :], dx.to(DX.dtype.element_ty), mask=mask)
        dw += tl.sum(dy * xhat, axis=0)
    tl.store(DW_PART + pid * n_cols + cols, dw, mask=cmask)


def rms_norm_forward(x2: torch.Tensor, weight: torch.Tensor, eps: float, offset: float):
    n_rows, n_cols = x2.shape
    y = torch.empty_like(x2)
    rstd = torch.empty(n_rows, dtype=torch.float32, device=x2.device)
    block_n = next_pow2(n_cols)
    block_m = rows_per_tile(block_n, n_rows)
    _rms_norm_fwd[(cdiv(n_rows, block_m),)](
        x2, weight, y, rstd, n_rows, n_cols, x2.stride(0), y.stride(0), float(eps), float(offset),
        BLOCK_M=block_m, BLOCK_N=block_n)
    return y, rstd


def rms_norm_backward(dy2: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor,
                      offset: float, need_dw: bool = True):
    n_rows, n_cols = x2.shape
    dx = torch.empty_like(x2)
    block_n = next_pow2(n_cols)
    block_m = rows_per_tile(block_n, n_rows)
    n_progs = reduction_programs(x2.device, cdiv(n_rows, block_m))
    rows_per_prog = cdiv(cdiv(n_rows, n_progs), block_m) * block_m
    n_progs = cdiv(n_rows, rows_per_prog)
    dw_part = torch.empty((n_progs, n_cols), dtype=torch.float32, device=x2.device)
    _rms_norm_bwd[(n_progs,)](
        dy2, x2, weight, rstd, dx, dw_part, n_rows, n_cols, rows_per_prog,
        dy2.stride(0), x2.stride(0), dx.stride(0), float(offset), BLOCK_M=block_m, BLOCK_N=block_n)
    return dx, (dw_part.sum(0) if need_dw else None)


class RMSNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps, offset):
        shape = x.shape
        x2 = as_rows(x)
        y, rstd = rms_norm_forward(x2, weight, eps, offset)
        ctx.save_for_backward(x2, weight, rstd)
        ctx.offset = offset
        return y.view(shape)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, rstd = ctx.saved_tensors
        need_dw = ctx.needs_input_grad[1]
        dx, dw = rms_norm_backward(as_rows(dy), x2, weight, rstd, ctx.offset, need_dw)
        dw = dw.to(weight.dtype) if need_dw else None
        return dx.view(dy.shape), dw, None, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, *, offset: float = 0.0) -> torch.Tensor:
    """RMS-normalise ``x`` over its last dimension and scale by ``weight + offset``.

    ``x``: any shape ``(..., n)``; ``weight``: ``(n,)``. Returns a tensor of ``x``'s shape and dtype.
    Gradients flow to ``x`` and ``weight``.
    """
    if weight.dim() != 1 or weight.shape[0] != x.shape[-1]:
        raise ValueError(f"rms_norm: weight of shape {tuple(weight.shape)} does not match the last "
                         f"dimension of x {tuple(x.shape)}")
    return RMSNormFunction.apply(x, weight, float(eps), float(offset))
