"""Float64 PyTorch references for the kernel tests: plain formulas, no tricks."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def up(t: torch.Tensor) -> torch.Tensor:
    """A float64 leaf copy of ``t`` that records gradients."""
    return t.detach().to(torch.float64).requires_grad_(True)


def rms_norm(x, w, eps, offset=0.0):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (w + offset)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope(q, k, cos, sin):
    """cos/sin broadcastable to (batch, 1, seq, rotary_dim)."""
    rot = cos.shape[-1]
    def one(x):
        xr, xp = x[..., :rot], x[..., rot:]
        return torch.cat((xr * cos + rotate_half(xr) * sin, xp), dim=-1)
    return one(q), one(k)


def swiglu(g, u):
    return F.silu(g) * u


def geglu(g, u, approximate="none"):
    return F.gelu(g, approximate=approximate) * u


def cross_entropy(logits, labels, ignore_index=-100, softcap=None):
    z = logits if softcap is None else softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(z.reshape(-1, z.shape[-1]), labels.reshape(-1), ignore_index=ignore_index)


def lora_linear(x, w, bias, a, b, scaling):
    y = x @ w.t()
    if bias is not None:
        y = y + bias
    if a is not None:
        y = y + scaling * ((x @ a.t()) @ b.t())
    return y
