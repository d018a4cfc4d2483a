"""A gated MLP with LoRA on all three projections: ``down(act(gate(x)) * up(x))``, one Function.

Two ways to keep what the backward pass needs (``mode``):

- ``"saved"``: the forward keeps ``x``, the gate and up pre-activations and the rank-r products;
  the activation ``h`` is not kept (the backward GLU kernel writes it again together with the gate
  and up gradients).
- ``"deferred"``: the forward keeps only ``x`` and returns an *uninitialised* output of the right
  shape; the backward computes gate and up itself, chunk of rows by chunk of rows. This is for the
  recompute pass of activation checkpointing when the layer's output is only added to the residual
  stream: the values of that output are never read (the add's backward needs none), so the down
  projection's base GEMM and the MLP's dequantizations of the recompute are skipped, and the
  backward's working set is bounded by the chunk, whatever the sequence length.

The adapters' rank-r terms are added by the GEMMs (a 4-bit weight is dequantized merged with its
adapter; a dense one's GEMM accumulates into the adapter's product: see lora_weights), not inside the
activation kernel: measured on an H100 (2026-12-06, docs/device/glu_speed.py)
at llama-8b's MLP, a GLU kernel adding r = 16 terms per element ran at a third of the plain kernel's
speed (instruction-bound), which cost more than the adapter products' extra reads and writes.

With gradients disabled (inference, or the first pass of activation checkpointing) the MLP runs
chunk by chunk too, so long sequences never hold full gate/up activations. Base weights (dense or
NF4) are dequantized on the fly, one at a time, and dropped after use.
"""

from __future__ import annotations

import torch

from .geglu import geglu_backward, geglu_forward
from .swiglu import swiglu_backward, swiglu_forward
from .lora_weights import (LoRAWeights, adapters, as_2d, matmul_as, project, project_group,
                           project_group_backward, scaled_mm)

ACTIVATIONS = ("swiglu", "geglu", "geglu_tanh")
MODES = ("saved", "deferred")
CHUNK_ELEMENTS = 1 << 25  # elements of one (rows x intermediate) activation per chunk: 64 MiB in bf16


def chunk_rows(n_rows: int, intermediate: int, chunk_elements: int = CHUNK_ELEMENTS) -> int:
    """Rows per chunk so that one (rows, intermediate) activation holds about ``chunk_elements``."""
    rows = max(256, (chunk_elements // max(intermediate, 1)) // 256 * 256)
    if rows >= n_rows:
        return n_rows
    n_chunks = -(-n_rows // rows)
    return -(-n_rows // n_chunks)  # equal chunks


def _act_forward(activation, gate, up):
    if activation == "swiglu":
        return swiglu_forward(gate, up)
    return geglu_forward(gate, up, "tanh" if activation == "geglu_tanh" else "none")


def _act_backward_in_place(activation, dh, gate, up):
    """dgate over ``gate``, dup over ``up``, h over ``dh``."""
    if activation == "swiglu":
        return swiglu_backward(dh, gate, up, with_h=True, in_place=True)
    return geglu_backward(dh, gate, up, "tanh" if activation == "geglu_tanh" else "none", with_h=True,
                          in_place=True)


def mlp_forward(x2, gate: LoRAWeights, up: LoRAWeights, down: LoRAWeights, activation: str,
                chunk: int) -> torch.Tensor:
    """The MLP's output without autograd, ``chunk`` rows at a time."""
    n = x2.shape[0]
    if n <= chunk:
        (g, u), _ = project_group(x2, (gate, up), need_xa=False)
        return project(_act_forward(activation, g, u), down, need_xa=False)[0]
    y = x2.new_empty((n, down.out_features))
    wg, wu, wd = gate.effective(x2.dtype), up.effective(x2.dtype), down.effective(x2.dtype)
    for i in range(0, n, chunk):
        xc = x2[i:i + chunk]
        (g, u), _ = project_group(xc, (gate, up), (wg, wu), need_xa=False)
        y[i:i + chunk] = project(_act_forward(activation, g, u), down, wd, need_xa=False)[0]
    return y


class _Grads:
    """Adapter gradients summed over chunks in float32 (a single chunk's are used as they are)."""

    def __init__(self):
        self.values: dict[str, torch.Tensor | None] = {}
        self.dtypes: dict[str, torch.dtype] = {}

    def add(self, key: str, g: torch.Tensor | None) -> None:
        old = self.values.get(key)
        if old is None or g is None:
            self.values[key] = g
            if g is not None:
                self.dtypes[key] = g.dtype
            return
        if old.dtype != torch.float32:
            old = old.float()
        self.values[key] = old.add_(g)

    def get(self, key: str):
        g = self.values.get(key)
        return g if g is None else g.to(self.dtypes[key])


class LoRAMLPFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gate: LoRAWeights, up: LoRAWeights, down: LoRAWeights, activation: str, mode: str,
                chunk: int, *ab):
        x2 = as_2d(x)
        ctx.projections = (gate, up, down)
        ctx.activation, ctx.mode, ctx.chunk = activation, mode, chunk
        ctx.x_shape = x.shape
        if mode == "deferred":
            ctx.save_for_backward(x2)
            return x2.new_empty((*x.shape[:-1], down.out_features))
        (g, u), (xa_g, xa_u) = project_group(x2, (gate, up))
        h = _act_forward(activation, g, u)
        y, ha_d = project(h, down)
        ctx.save_for_backward(x2, g, u, xa_g, xa_u, ha_d)
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, dy):
        gate, up, down = ctx.projections
        need_dx = ctx.needs_input_grad[0]
        dy2 = as_2d(dy)
        grads = _Grads()
        if ctx.mode == "deferred":
            (x2,) = ctx.saved_tensors
            dx = torch.empty_like(x2) if need_dx else None
            n, chunk = x2.shape[0], ctx.chunk
            # Each base weight is dequantized once for all chunks.
            ws = tuple(p.effective(x2.dtype) for p in (gate, up, down))
            for i in range(0, n, chunk):
                xc = x2[i:i + chunk]
                (g, u), (xa_g, xa_u) = project_group(xc, (gate, up), ws[:2])
                _backward_rows(ctx.activation, dy2[i:i + chunk], xc, g, u, xa_g, xa_u, None, gate, up, down,
                               grads, dx[i:i + chunk] if need_dx else None, ws)
        else:
            x2, g, u, xa_g, xa_u, ha_d = ctx.saved_tensors
            dx = torch.empty_like(x2) if need_dx else None
            # g and u are overwritten by their gradients: autograd runs this backward once.
            _backward_rows(ctx.activation, dy2, x2, g, u, xa_g, xa_u, ha_d, gate, up, down, grads, dx, None)
        dx = dx.view(ctx.x_shape) if need_dx else None
        return (dx, None, None, None, None, None, None,
                grads.get("ga"), grads.get("gb"), grads.get("ua"), grads.get("ub"), grads.get("da"), grads.get("db"))


def _backward_rows(activation, dy, x, g, u, xa_g, xa_u, ha_d, gate, up, down, grads: _Grads, dx_out, ws):
    """Backward of the MLP over one block of rows; writes ``dx_out`` (when given) and adds the adapter
    gradients to ``grads``. ``g`` and ``u`` are consumed (overwritten). ``ws``: the effective gate, up
    and down weights (``LoRAWeights.effective``) when the caller holds them, else None (each is formed
    when needed)."""
    wg, wu, wd = ws if ws is not None else (None, None, None)
    wd = wd if wd is not None else down.effective(dy.dtype)
    if down.lora_a is not None:
        a_d, b_d = down.adapter(dy.dtype)
        dyb = scaled_mm(dy, b_d, down.scaling)
        if down.merges():
            dh = dy @ wd
        else:  # the adapter's share first, written (beta=0); the compute-bound base GEMM adds into it
            dh = scaled_mm(dyb, a_d)
            dh.addmm_(dy, wd)
    else:
        dh = dy @ wd
    del wd
    dg, du, h = _act_backward_in_place(activation, dh, g, u)
    if down.lora_a is not None:
        if ha_d is None:
            ha_d = scaled_mm(h, a_d.t(), down.scaling)
        grads.add("db", matmul_as(dy.t(), ha_d, down.lora_b.dtype))
        grads.add("da", matmul_as(dyb.t(), h, down.lora_a.dtype))
    del h, dh
    _, ((da_g, db_g), (da_u, db_u)) = project_group_backward(
        (dg, du), x, (xa_g, xa_u), (gate, up), need_dx=dx_out is not None, ws=(wg, wu), dx_out=dx_out)
    for key, value in (("ga", da_g), ("gb", db_g), ("ua", da_u), ("ub", db_u)):
        grads.add(key, value)


def lora_mlp(x: torch.Tensor, gate: LoRAWeights, up: LoRAWeights, down: LoRAWeights,
             activation: str = "swiglu", *, mode: str = "saved", chunk: int | None = None) -> torch.Tensor:
    """``down(act(gate(x)) * up(x))`` for ``x`` (..., hidden); returns (..., hidden).

    ``gate``, ``up``, ``down`` are ``LoRAWeights`` (see ``lora_o``). ``activation``: ``"swiglu"``
    (SiLU: Llama, Mistral, Qwen, Phi-3), ``"geglu"`` (exact GELU) or ``"geglu_tanh"`` (Gemma's
    ``gelu_pytorch_tanh``). Gradients flow to ``x`` and to every adapter tensor. ``mode``:
    ``"saved"`` or ``"deferred"`` (see the module doc: the output's values are then undefined and
    only its gradient path is real). ``chunk``: rows per chunk (default from ``chunk_rows``).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"lora_mlp: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if mode not in MODES:
        raise ValueError(f"lora_mlp: mode must be one of {MODES}, got {mode!r}")
    n_rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    chunk = chunk or chunk_rows(n_rows, gate.out_features)
    if not torch.is_grad_enabled() or not (x.requires_grad or any(
            t is not None and t.requires_grad for t in adapters(gate, up, down))):
        y = mlp_forward(as_2d(x), gate, up, down, activation, max(1, chunk))
        return y.view(*x.shape[:-1], y.shape[-1])
    return LoRAMLPFunction.apply(x, gate, up, down, activation, mode, max(1, chunk), *adapters(gate, up, down))
