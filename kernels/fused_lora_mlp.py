"""A gated MLP with LoRA on all three projections: ``down(act(gate(x)) * up(x))``, one Function.

Forward keeps ``x``, the gate and up pre-activations and the rank-r products; the activation
``h`` is not kept: the backward GLU kernel (``glu_silu.py`` / ``glu_gelu.py``) writes it again
together with the gate and up gradients. Base weights (dense or NF4) are dequantized on the fly.
"""

from __future__ import annotations

import torch

from .glu_gelu import geglu_backward, geglu_forward
from .glu_silu import swiglu_backward, swiglu_forward
from .lora_weights import LoRAWeights, adapters, as_2d, project, project_backward

ACTIVATIONS = ("swiglu", "geglu", "geglu_tanh")


def _act_forward(activation, gate, up):
    if activation == "swiglu":
        return swiglu_forward(gate, up)
    return geglu_forward(gate, up, "tanh" if activation == "geglu_tanh" else "none")


def _act_backward(activation, dh, gate, up):
    if activation == "swiglu":
        return swiglu_backward(dh, gate, up, with_h=True)
    return geglu_backward(dh, gate, up, "tanh" if activation == "geglu_tanh" else "none", with_h=True)


class LoRAMLPFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gate: LoRAWeights, up: LoRAWeights, down: LoRAWeights, activation: str, *ab):
        x2 = as_2d(x)
        g, xa_g = project(x2, gate)
        u, xa_u = project(x2, up)
        h = _act_forward(activation, g, u)
        y, ha_d = project(h, down)
        ctx.projections = (gate, up, down)
        ctx.activation = activation
        ctx.x_shape = x.shape
        ctx.save_for_backward(x2, g, u, xa_g, xa_u, ha_d)
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, dy):
        x2, g, u, xa_g, xa_u, ha_d = ctx.saved_tensors
        gate, up, down = ctx.projections
        dy2 = as_2d(dy)
        dh = dy2 @ down.dense(dy2.dtype)
        da_d = db_d = None
        if down.lora_a is not None:
            dyl = dy2.to(down.lora_b.dtype)
            dyb = dyl @ down.lora_b
            dh = dh + ((dyb @ down.lora_a) * down.scaling).to(dh.dtype)
        dg, du, h = _act_backward(ctx.activation, dh.to(g.dtype), g, u)
        if down.lora_a is not None:
            db_d = (dyl.t() @ ha_d) * down.scaling
            da_d = (dyb.t() @ h.to(down.lora_a.dtype)) * down.scaling
        need_dx = ctx.needs_input_grad[0]
        dx_g, da_g, db_g = project_backward(dg, x2, xa_g, gate, need_dx=need_dx)
        dx_u, da_u, db_u = project_backward(du, x2, xa_u, up, need_dx=need_dx)
        dx = dx_g.add_(dx_u).view(ctx.x_shape) if need_dx else None
        return dx, None, None, None, None, da_g, db_g, da_u, db_u, da_d, db_d


def lora_mlp(x: torch.Tensor, gate: LoRAWeights, up: LoRAWeights, down: LoRAWeights,
             activation: str = "swiglu") -> torch.Tensor:
    """``down(act(gate(x)) * up(x))`` for ``x`` (..., hidden); returns (..., hidden).

    ``gate``, ``up``, ``down`` are ``LoRAWeights`` (see ``lora_o``). ``activation``: ``"swiglu"``
    (SiLU: Llama, Mistral, Qwen, Phi-3), ``"geglu"`` (exact GELU) or ``"geglu_tanh"`` (Gemma's
    ``gelu_pytorch_tanh``). Gradients flow to ``x`` and to every adapter tensor.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"lora_mlp: activation must be one of {ACTIVATIONS}, got {activation!r}")
    return LoRAMLPFunction.apply(x, gate, up, down, activation, *adapters(gate, up, down))
