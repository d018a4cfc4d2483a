"""GeGLU: ``h = gelu(gate) * up`` with the exact (erf) GELU or its tanh approximation.

Everything is computed in float32 and rounded once. The tanh form is evaluated as
``g * sigmoid(2 z)`` (equal to ``0.5 g (1 + tanh z)``) with ``exp`` of a non-positive number: no
overflow, no cancellation in the negative tail, and no libdevice ``tanh``, which the Triton
interpreter cannot run. The exact form uses ``erf``; for gates below about -4 its ``1 + erf``
cancels in float32 exactly as PyTorch's own float32 GELU does (values there are below 1e-4).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import cdiv, elementwise_block
from .swiglu import glu_backward_buffers

@triton.jit
def _sigmoid(y):
    e = tl.exp(-tl.abs(y))
    return tl.where(y >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@triton.jit
def _gelu_and_grad(g, TANH: tl.constexpr):
    if TANH:
        # 0.5 * (1 + tanh(z)) == sigmoid(2 z): no cancellation for very negative gates
        inner = 0.7978845608028654 * (g + 0.044715 * g * g * g)
        s = _sigmoid(2.0 * inner)
        act = g * s
        dact = s + 2.0 * g * s * (1.0 - s) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * g * g)
    else:
        cdf = 0.5 * (1.0 + tl.math.erf(g * 0.7071067811865476))
        act = g * cdf
        dact = cdf + g * 0.3989422804014327 * tl.exp(-0.5 * g * g)
    return act, dact


@triton.jit
def _geglu_fwd(G, U, H, n, TANH: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    act, _ = _gelu_and_grad(g, TANH)
    tl.store(H + offs, (act * u).to(H.dtype.element_ty), mask=mask)


@triton.jit
def _geglu_bwd(DH, G, U, DG, DU, H, n, TANH: tl.constexpr, WITH_H: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    dh = tl.load(DH + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    act, dact = _gelu_and_grad(g, TANH)
    tl.store(DU + offs, (dh * act).to(DU.dtype.element_ty), mask=mask)
    tl.store(DG + offs, (dh * u * dact).to(DG.dtype.element_ty), mask=mask)
    if WITH_H:
        tl.store(H + offs, (act * u).to(H.dtype.element_ty), mask=mask)


def _is_tanh(approximate: str) -> bool:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"geglu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return approximate == "tanh"


def geglu_forward(gate: torch.Tensor, up: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    gate, up = gate.contiguous(), up.contiguous()
    h = torch.empty_like(gate)
    n = gate.numel()
    block = elementwise_block()
    _geglu_fwd[(cdiv(n, block),)](gate, up, h, n, TANH=_is_tanh(approximate), BLOCK=block)
    return h


def geglu_backward(dh: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, approximate: str = "none",
                   with_h: bool = False, in_place: bool = False):
    """Returns ``(dgate, dup, h or None)``; ``in_place`` as in ``swiglu_backward``."""
    dh, gate, up, dg, du, h = glu_backward_buffers(dh, gate, up, with_h, in_place)
    n = gate.numel()
    block = elementwise_block()
    _geglu_bwd[(cdiv(n, block),)](dh, gate, up, dg, du, h, n, TANH=_is_tanh(approximate), WITH_H=with_h,
                                  BLOCK=block)
    return dg, du, (h if with_h else None)


class GeGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up, approximate):
        ctx.save_for_backward(gate, up)
        ctx.approximate = approximate
        return geglu_forward(gate, up, approximate)

    @staticmethod
    def backward(ctx, dh):
        gate, up = ctx.saved_tensors
        dg, du, _ = geglu_backward(dh, gate, up, ctx.approximate)
        return dg, du, None


def geglu(gate: torch.Tensor, up: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """``gelu(gate) * up``; ``approximate`` is ``"none"`` (erf, as ``F.gelu``) or ``"tanh"``
    (as ``F.gelu(approximate="tanh")``, Gemma's ``gelu_pytorch_tanh``)."""
    _is_tanh(approximate)
    if gate.shape != up.shape:
        raise ValueError(f"geglu: gate {tuple(gate.shape)} and up {tuple(up.shape)} differ in shape")
    return GeGLUFunction.apply(gate, up, approximate)
