"""SwiGLU: ``h = silu(gate) * up`` elementwise, computed in float32 and rounded once.

The backward kernel recomputes the sigmoid from ``gate`` instead of saving it. It can also write
``h`` again (``with_h``), which the fused LoRA MLP uses so that its backward never keeps ``h``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import cdiv, elementwise_block


@triton.jit
def _silu_and_grad(g):
    """``silu(g)`` and its derivative, float32."""
    s = 1.0 / (1.0 + tl.exp(-g))
    return g * s, s * (1.0 + g * (1.0 - s))


@triton.jit
def _swiglu_fwd(G, U, H, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    silu, _ = _silu_and_grad(g)
    tl.store(H + offs, (silu * u).to(H.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd(DH, G, U, DG, DU, H, n, WITH_H: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    dh = tl.load(DH + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    silu, dsilu = _silu_and_grad(g)
    tl.store(DU + offs, (dh * silu).to(DU.dtype.element_ty), mask=mask)
    tl.store(DG + offs, (dh * u * dsilu).to(DG.dtype.element_ty), mask=mask)
    if WITH_H:
        tl.store(H + offs, (silu * u).to(H.dtype.element_ty), mask=mask)


def _check(gate: torch.Tensor, up: torch.Tensor, name: str) -> None:
    if gate.shape != up.shape:
        raise ValueError(f"{name}: gate {tuple(gate.shape)} and up {tuple(up.shape)} differ in shape")


def swiglu_forward(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    gate, up = gate.contiguous(), up.contiguous()
    h = torch.empty_like(gate)
    n = gate.numel()
    block = elementwise_block()
    _swiglu_fwd[(cdiv(n, block),)](gate, up, h, n, BLOCK=block)
    return h


def swiglu_backward(dh: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, with_h: bool = False,
                    in_place: bool = False):
    """Returns ``(dgate, dup, h or None)``.

    ``in_place`` (contiguous inputs only) writes dgate over ``gate``, dup over ``up`` and h over
    ``dh``: each element is read before it is written, so no extra buffer is needed.
    """
    dh, gate, up, dg, du, h = glu_backward_buffers(dh, gate, up, with_h, in_place)
    n = gate.numel()
    block = elementwise_block()
    _swiglu_bwd[(cdiv(n, block),)](dh, gate, up, dg, du, h, n, WITH_H=with_h, BLOCK=block)
    return dg, du, (h if with_h else None)


class SwiGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return swiglu_forward(gate, up)

    @staticmethod
    def backward(ctx, dh):
        gate, up = ctx.saved_tensors
        dg, du, _ = swiglu_backward(dh, gate, up)
        return dg, du


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` for two tensors of the same shape; the result has ``gate``'s dtype."""
    _check(gate, up, "swiglu")
    return SwiGLUFunction.apply(gate, up)


def glu_backward_buffers(dh: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, with_h: bool, in_place: bool):
    """Contiguous ``(dh, gate, up)`` and the outputs ``(dgate, dup, h)`` of a GLU backward kernel: the
    inputs themselves when ``in_place``, else new tensors. When ``h`` is not asked for it is ``dgate``,
    a placeholder pointer the kernel never stores through."""
    dh, gate, up = dh.contiguous(), gate.contiguous(), up.contiguous()
    if in_place:
        dg, du = gate, up
        h = dh if with_h else dg
    else:
        dg, du = torch.empty_like(gate), torch.empty_like(up)
        h = torch.empty_like(gate) if with_h else dg
    return dh, gate, up, dg, du, h
