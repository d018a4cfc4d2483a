"""The gated activation of a LoRA MLP with the adapters' rank-r terms added inside the kernel.

``h = act(g + xa_g @ B_g.T) * (u + xa_u @ B_u.T)``, where ``g`` and ``u`` are the gate and up base
GEMMs' outputs alone and ``xa_g``, ``xa_u`` the adapters' (scaled) rank-r products. Adding the
adapters here instead of in the GEMMs saves, for each of gate and up, the (rows x intermediate)
write of the adapter's product and the base GEMM's read of it in its epilogue: the kernel reads
``g`` and ``u`` anyway, and the rank-r term of a tile is r multiply-adds per element.

The backward kernel does the same for the down projection's input gradient
(``dh = dh_base + dyb @ A_down``, ``dyb = scaling * dy @ B_down``) and writes, in place, the gate
and up gradients over ``g`` and ``u`` and ``h`` again over ``dh`` (each tile is read before it is
written). Everything is computed in float32 and rounded once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import cdiv, interpreted
from .geglu import _gelu_and_grad
from .swiglu import _silu_and_grad

ACTIVATIONS = {"swiglu": 0, "geglu": 1, "geglu_tanh": 2}


@triton.jit
def _act_and_grad(g, ACT: tl.constexpr):
    if ACT == 0:
        return _silu_and_grad(g)
    else:
        return _gelu_and_grad(g, ACT == 2)


@triton.jit
def _plus_low_rank(acc, X, sx, W, rows, cols, n_rows, n_cols, R):
    """``acc`` (a float32 rows x cols tile) plus that tile of ``X @ W``, for X (n_rows, R) with row
    stride ``sx`` and W (R, n_cols) contiguous, so that each of a tile's R rows of W is one coalesced
    load: R outer products in the tile's own layout (a ``tl.dot`` would move the tile through shared
    memory to and from the tensor cores' layout, which costs more than the R multiply-adds of a
    memory-bound kernel)."""
    rmask, cmask = rows < n_rows, cols < n_cols
    for k in range(0, R):
        x = tl.load(X + rows * sx + k, mask=rmask, other=0.0).to(tl.float32)
        w = tl.load(W + k * n_cols + cols, mask=cmask, other=0.0).to(tl.float32)
        acc += x[:, None] * w[None, :]
    return acc


@triton.jit
def _tile(BM: tl.constexpr, BN: tl.constexpr, n_rows, n_cols):
    """This program's rows and columns, their mask and offsets in a contiguous (n_rows, n_cols) tensor."""
    rows = tl.program_id(0).to(tl.int64) * BM + tl.arange(0, BM)
    cols = tl.program_id(1).to(tl.int64) * BN + tl.arange(0, BN)
    return rows, cols, (rows[:, None] < n_rows) & (cols[None, :] < n_cols), rows[:, None] * n_cols + cols[None, :]


@triton.jit
def _adapted_gate_up(G, U, XAG, sxg, BG, RG, XAU, sxu, BU, RU, rows, cols, mask, at, n_rows, n_cols,
                     HAS_G: tl.constexpr, HAS_U: tl.constexpr):
    """The tile's gate and up outputs, float32, with their adapters' rank-r terms added."""
    g = tl.load(G + at, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + at, mask=mask, other=0.0).to(tl.float32)
    if HAS_G:  # BG, BU: B.T, (R, n_cols)
        g = _plus_low_rank(g, XAG, sxg, BG, rows, cols, n_rows, n_cols, RG)
    if HAS_U:
        u = _plus_low_rank(u, XAU, sxu, BU, rows, cols, n_rows, n_cols, RU)
    return g, u


@triton.jit
def _lora_glu_fwd(G, U, H, XAG, sxg, BG, RG, XAU, sxu, BU, RU, n_rows, n_cols,
                  ACT: tl.constexpr, HAS_G: tl.constexpr, HAS_U: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    rows, cols, mask, at = _tile(BM, BN, n_rows, n_cols)
    g, u = _adapted_gate_up(G, U, XAG, sxg, BG, RG, XAU, sxu, BU, RU, rows, cols, mask, at, n_rows, n_cols,
                            HAS_G, HAS_U)
    act, _ = _act_and_grad(g, ACT)
    tl.store(H + at, (act * u).to(H.dtype.element_ty), mask=mask)


@triton.jit
def _lora_glu_bwd(DH, G, U, XAG, sxg, BG, RG, XAU, sxu, BU, RU, DYB, sdy, AD, RD, n_rows, n_cols,
                  ACT: tl.constexpr, HAS_G: tl.constexpr, HAS_U: tl.constexpr, HAS_D: tl.constexpr,
                  BM: tl.constexpr, BN: tl.constexpr):
    rows, cols, mask, at = _tile(BM, BN, n_rows, n_cols)
    g, u = _adapted_gate_up(G, U, XAG, sxg, BG, RG, XAU, sxu, BU, RU, rows, cols, mask, at, n_rows, n_cols,
                            HAS_G, HAS_U)
    dh = tl.load(DH + at, mask=mask, other=0.0).to(tl.float32)
    if HAS_D:  # A_down is (R, n_cols)
        dh = _plus_low_rank(dh, DYB, sdy, AD, rows, cols, n_rows, n_cols, RD)
    act, dact = _act_and_grad(g, ACT)
    tl.store(G + at, (dh * u * dact).to(G.dtype.element_ty), mask=mask)
    tl.store(U + at, (dh * act).to(U.dtype.element_ty), mask=mask)
    tl.store(DH + at, (act * u).to(DH.dtype.element_ty), mask=mask)


# (rows, columns, warps) of one compiled program's tile: eight elements a thread, as the plain GLU
# kernels have. ptxas (sm_90) gives 56 registers forward and 96 backward, no spills, where a 32 x 128
# tile spilled in the backward (tl.dot: 255 registers and spills).
TILES = (8, 128, 4)


def _tiles() -> tuple[int, int, int]:
    return (128, 512, 4) if interpreted() else TILES


def _rank_args(xa: torch.Tensor | None, w: torch.Tensor | None, like: torch.Tensor):
    """(xa, its row stride, w contiguous, rank) for a kernel's low-rank term ``xa @ w``, w (r,
    columns); a placeholder when the projection has no adapter."""
    if xa is None:
        return like, 0, like, 0
    if xa.stride(-1) != 1:
        xa = xa.contiguous()
    return xa, xa.stride(0), w.contiguous(), xa.shape[1]


def _transposed(b: torch.Tensor | None) -> torch.Tensor | None:
    return None if b is None else b.t()


def _checked(name: str, *ts: torch.Tensor) -> None:
    shape = ts[0].shape
    for t in ts:
        if t.shape != shape or not t.is_contiguous():
            raise ValueError(f"{name}: gate, up (and dh) must be contiguous and of one shape, got "
                             f"{[tuple(x.shape) for x in ts]}")


def lora_glu_forward(g: torch.Tensor, u: torch.Tensor, xa_g: torch.Tensor | None, b_g: torch.Tensor | None,
                     xa_u: torch.Tensor | None, b_u: torch.Tensor | None, activation: str = "swiglu",
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """``act(g + xa_g @ b_g.T) * (u + xa_u @ b_u.T)`` for 2-D ``g``, ``u`` (rows, intermediate);
    ``xa_*`` (rows, r) and ``b_*`` (intermediate, r) in ``g``'s dtype, or None for no adapter.
    ``out`` may be ``g`` or ``u`` themselves."""
    _checked("lora_glu", g, u)
    h = torch.empty_like(g) if out is None else out
    n_rows, n_cols = g.shape
    xg, sxg, bg, rg = _rank_args(xa_g, _transposed(b_g), g)
    xu, sxu, bu, ru = _rank_args(xa_u, _transposed(b_u), g)
    bm, bn, warps = _tiles()
    _lora_glu_fwd[(cdiv(n_rows, bm), cdiv(n_cols, bn))](
        g, u, h, xg, sxg, bg, rg, xu, sxu, bu, ru, n_rows, n_cols, ACT=ACTIVATIONS[activation],
        HAS_G=xa_g is not None, HAS_U=xa_u is not None, BM=bm, BN=bn, num_warps=warps)
    return h


def lora_glu_backward_in_place(dh: torch.Tensor, g: torch.Tensor, u: torch.Tensor, xa_g, b_g, xa_u, b_u,
                               dyb: torch.Tensor | None, a_d: torch.Tensor | None, activation: str = "swiglu"):
    """Gradients of `lora_glu_forward` given ``dh_base + dyb @ a_d`` as ``h``'s gradient (``dyb`` (rows,
    r), ``a_d`` (r, intermediate), or None): returns ``(dg, du, h)``, written over ``g``, ``u`` and
    ``dh``. ``dg`` and ``du`` are the gradients of the adapted gate and up outputs."""
    _checked("lora_glu backward", dh, g, u)
    n_rows, n_cols = g.shape
    xg, sxg, bg, rg = _rank_args(xa_g, _transposed(b_g), g)
    xu, sxu, bu, ru = _rank_args(xa_u, _transposed(b_u), g)
    yd, sdy, ad, rd = _rank_args(dyb, a_d, g)
    bm, bn, warps = _tiles()
    _lora_glu_bwd[(cdiv(n_rows, bm), cdiv(n_cols, bn))](
        dh, g, u, xg, sxg, bg, rg, xu, sxu, bu, ru, yd, sdy, ad, rd, n_rows, n_cols, ACT=ACTIVATIONS[activation],
        HAS_G=xa_g is not None, HAS_U=xa_u is not None, HAS_D=dyb is not None, BM=bm, BN=bn, num_warps=warps)
    return g, u, dh
