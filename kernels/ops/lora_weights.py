"""What a fused LoRA projection needs to know about one linear layer, as plain tensors.

``y = x @ W.T + bias + scaling * (x @ A.T) @ B.T`` with ``W`` frozen (a dense tensor or a
bitsandbytes ``Params4bit``, dequantized on the fly and never kept), ``bias`` frozen or None, and
the adapter ``A`` (r, in), ``B`` (out, r) trainable (or both None: a projection without adapter).
This module knows nothing about PEFT; the trainer's patcher reads PEFT layers into it.

Every matrix product runs in the activations' dtype. The adapter may be stored in float32 (PEFT's
master copy, which the optimizer updates); the activations are never cast, only the two small
rank-r matrices, and that cast is kept until the adapter changes (``cast_adapter``), so a training
step casts each adapter once instead of at every forward, recompute and backward use; after an
optimizer step, the first use of any adapter re-casts every kept adapter in one batched copy (one
launch per step instead of one per adapter tensor: 448 on a 32-layer model). The
adapter's contribution is accumulated into the base output by the GEMM itself (``addmm_`` with
``beta=1``) rather than by a separate elementwise pass.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from .nf4_dequantize import base_weight

_optimizer_steps = 0
_step_hook = None
# Adapter tensors with a kept cast, per (device, stored dtype, cast dtype), by id (tensors compare
# elementwise, so they cannot be set members): re-cast together, forgotten when collected.
_KEPT: dict[tuple, weakref.WeakValueDictionary] = {}


def _count_step(*_args) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


def _key(t: torch.Tensor, dtype: torch.dtype) -> tuple:
    """What a kept cast of ``t`` is valid for. A change is any in-place write PyTorch counts
    (``t._version``: loading weights, torch optimizers), new storage (``data_ptr``), or any optimizer
    step at all: bitsandbytes' optimizers write parameters through raw pointers, which no version
    counter sees, so every ``torch.optim.Optimizer.step`` (theirs included) retires every kept cast."""
    return (_optimizer_steps, t._version, t.data_ptr(), dtype)


def cast_adapter(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` in ``dtype``, cast once and reused until ``t`` changes (see ``_key``)."""
    global _step_hook
    if t.dtype == dtype:
        return t
    if _step_hook is None:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        _step_hook = register_optimizer_step_post_hook(_count_step)
    kept = getattr(t, "_tuitune_cast", None)
    if kept is not None and kept[0] == _key(t, dtype):
        return kept[1]
    if type(t) not in (torch.Tensor, torch.nn.Parameter):  # e.g. a DTensor: cast on its own, every time
        return t.detach().to(dtype)
    group = _KEPT.setdefault((t.device, t.dtype, dtype), weakref.WeakValueDictionary())
    if not _holds_cast(kept, t, dtype) or group.get(id(t)) is not t:
        t._tuitune_cast = (None, torch.empty(t.shape, dtype=dtype, device=t.device))
        group[id(t)] = t
    _recast(group, dtype)
    return t._tuitune_cast[1]


def optimizer_steps() -> int:
    """How many optimizer steps have run in this process (each one retires every kept cast)."""
    return _optimizer_steps


def refresh_kept_casts() -> None:
    """Bring every kept cast up to date now, one batched copy per group. For callers that read the
    casts by address without asking for them (CUDA graphs of a layer: tuitune.trainer.layer_graphs)."""
    for (_device, _stored, dtype), group in list(_KEPT.items()):
        _recast(group, dtype)


def _holds_cast(kept, t: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether ``kept`` (a ``_tuitune_cast`` record or None) has a buffer for ``t`` in ``dtype``."""
    return kept is not None and kept[1].dtype == dtype and kept[1].shape == t.shape


def _recast(group: weakref.WeakValueDictionary, dtype: torch.dtype) -> None:
    """Bring every stale kept cast in ``group`` up to date, with one batched copy."""
    stale = []
    for s in list(group.values()):
        kept = s._tuitune_cast
        if not _holds_cast(kept, s, dtype):  # kept for another use now
            group.pop(id(s), None)
        elif kept[0] != _key(s, dtype):
            stale.append(s)
    if not stale:
        return
    targets = [s._tuitune_cast[1] for s in stale]
    with torch.no_grad():
        torch._foreach_copy_(targets, [s.detach() for s in stale])
    for s, target in zip(stale, targets):
        s._tuitune_cast = (_key(s, dtype), target)


@dataclass(frozen=True)
class LoRAWeights:
    weight: torch.Tensor
    bias: torch.Tensor | None = None
    lora_a: torch.Tensor | None = None
    lora_b: torch.Tensor | None = None
    scaling: float = 1.0

    @property
    def out_features(self) -> int:
        qs = getattr(self.weight, "quant_state", None)
        return int(qs.shape[0]) if qs is not None else int(self.weight.shape[0])

    @property
    def in_features(self) -> int:
        qs = getattr(self.weight, "quant_state", None)
        return int(qs.shape[1]) if qs is not None else int(self.weight.shape[1])

    def dense(self, dtype: torch.dtype) -> torch.Tensor:
        return base_weight(self.weight, dtype)

    def adapter(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B)`` in ``dtype`` (a cast of the two small matrices when they are stored wider)."""
        return cast_adapter(self.lora_a, dtype), cast_adapter(self.lora_b, dtype)


def project(x2: torch.Tensor, p: LoRAWeights, w: torch.Tensor | None = None):
    """Forward of one projection on 2-D ``x2``; returns ``(y, x @ A.T or None)``.

    ``w``: the projection's dense weight in ``x2``'s dtype, when the caller already has it.
    """
    w = p.dense(x2.dtype) if w is None else w
    if p.bias is not None:
        y = torch.addmm(p.bias.to(x2.dtype), x2, w.t())
    else:
        y = x2 @ w.t()
    if p.lora_a is None:
        return y, None
    a, b = p.adapter(x2.dtype)
    xa = x2 @ a.t()
    y.addmm_(xa, b.t(), alpha=p.scaling)
    return y, xa


def project_backward(dy: torch.Tensor, x2: torch.Tensor | None, xa: torch.Tensor | None, p: LoRAWeights,
                     need_dx: bool = True, w: torch.Tensor | None = None, dx_out: torch.Tensor | None = None,
                     accumulate: bool = True):
    """Gradients of one projection: ``(dx or None, dA or None, dB or None)``.

    ``x2`` is the projection's input (needed only for dA); ``xa`` the saved ``x @ A.T``. With
    ``dx_out`` the input gradient goes into that buffer (added to it when ``accumulate``, written
    over it otherwise) and is returned. dA and dB come back in the adapter's own dtype.
    """
    dx = None
    if need_dx:
        w = p.dense(dy.dtype) if w is None else w
        if dx_out is None:
            dx = dy @ w
        else:
            dx = dx_out.addmm_(dy, w, beta=1.0 if accumulate else 0.0)
    if p.lora_a is None:
        return dx, None, None
    a, b = p.adapter(dy.dtype)
    dyb = dy @ b  # (N, r)
    d_b = _grad(dy.t() @ xa, p.scaling, p.lora_b.dtype)
    d_a = _grad(dyb.t() @ x2, p.scaling, p.lora_a.dtype)
    if need_dx:
        dx.addmm_(dyb, a, alpha=p.scaling)
    return dx, d_a, d_b


def _grad(g: torch.Tensor, scaling: float, dtype: torch.dtype) -> torch.Tensor:
    g = g.to(dtype)
    return g.mul_(scaling) if scaling != 1.0 else g


def adapters(*projections: LoRAWeights) -> list[torch.Tensor | None]:
    """The A, B tensors of each projection, flattened, for ``autograd.Function.apply``."""
    out: list[torch.Tensor | None] = []
    for p in projections:
        out += [p.lora_a, p.lora_b]
    return out


def as_2d(x: torch.Tensor) -> torch.Tensor:
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.is_contiguous() else x2.contiguous()
