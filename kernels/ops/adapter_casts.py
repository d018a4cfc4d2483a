"""Casts of LoRA adapter matrices to the activations' dtype, kept until the adapter changes.

PEFT keeps A and B in float32 (the optimizer's master copy); the fused projections multiply in the
activations' dtype, so each adapter is cast once and the cast reused by every forward, recompute and
backward use of the step (``cast_adapter``). After an optimizer step, the first use of any adapter
re-casts every kept adapter in one batched copy (one launch per step instead of one per adapter
tensor: 448 on a 32-layer model). The A matrices of projections that share an input are kept as row
views of one buffer (``stacked_casts``), so their rank-r products come from one GEMM without a
concatenation per call.
"""

from __future__ import annotations

import weakref

import torch

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
    if t.dtype == dtype:
        return t
    _ensure_step_hook()
    kept = getattr(t, "_tuitune_cast", None)
    if kept is not None and kept[0] == _key(t, dtype):
        return kept[1]
    if type(t) not in (torch.Tensor, torch.nn.Parameter):  # e.g. a DTensor: cast on its own, every time
        return t.detach().to(dtype)
    group = _kept_group(t, dtype)
    if not _holds_cast(kept, t, dtype) or group.get(id(t)) is not t:
        t._tuitune_cast = (None, torch.empty(t.shape, dtype=dtype, device=t.device))
        group[id(t)] = t
    _recast(group, dtype)
    return t._tuitune_cast[1]


def _kept_group(t: torch.Tensor, dtype: torch.dtype) -> weakref.WeakValueDictionary:
    """The adapters whose casts to ``dtype`` are refreshed together with ``t``'s."""
    return _KEPT.setdefault((t.device, t.dtype, dtype), weakref.WeakValueDictionary())


def _ensure_step_hook() -> None:
    global _step_hook
    if _step_hook is None:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        _step_hook = register_optimizer_step_post_hook(_count_step)


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


_STACK = "_tuitune_stack"  # on a group's first adapter: (the group's ids, the stacked buffer)
_IN_STACK = "_tuitune_in_stack"  # on every adapter whose kept cast is a view of a stacked buffer


def stacked_casts(ts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """The casts of adapter matrices that share an input (q, k and v's A; gate and up's A), stacked by
    rows, without a concatenation per call: the kept casts are row views of one buffer, so refreshing
    them (``cast_adapter``, or ``refresh_kept_casts`` before a CUDA graph replays) refreshes the stack,
    and a graph that read the stack reads the current adapters. Concatenates when the casts cannot
    be views of one buffer (no cast needed, a DTensor, an adapter already in another group's stack)."""
    if len(ts) == 1:
        return cast_adapter(ts[0], dtype)
    if any(type(t) not in (torch.Tensor, torch.nn.Parameter) or t.dtype == dtype or t.dim() != 2 for t in ts):
        return torch.cat([cast_adapter(t, dtype) for t in ts])
    ids = tuple(id(t) for t in ts)
    kept = ts[0].__dict__.get(_STACK)
    buffer = kept[1] if kept is not None and kept[0] == ids else None
    if buffer is None or buffer.dtype != dtype or not _views_of(ts, buffer):
        if any(t.__dict__.get(_IN_STACK) for t in ts):
            return torch.cat([cast_adapter(t, dtype) for t in ts])
        buffer = _new_stack(ts, ids, dtype)
    for t in ts:
        cast_adapter(t, dtype)  # brings stale views up to date, in place
    return buffer


def _views_of(ts: list[torch.Tensor], buffer: torch.Tensor) -> bool:
    """Whether each adapter's kept cast is still its rows of ``buffer``."""
    offset = 0
    for t in ts:
        kept = getattr(t, "_tuitune_cast", None)
        if (kept is None or kept[1].dtype != buffer.dtype or kept[1].shape != t.shape
                or kept[1].data_ptr() != buffer[offset].data_ptr()):
            return False
        offset += t.shape[0]
    return True


def _new_stack(ts: list[torch.Tensor], ids: tuple, dtype: torch.dtype) -> torch.Tensor:
    """One buffer for the group's casts; each adapter's kept cast becomes its (stale) rows of it."""
    _ensure_step_hook()
    first = ts[0]
    buffer = torch.empty((sum(t.shape[0] for t in ts), first.shape[1]), dtype=dtype, device=first.device)
    group = _kept_group(first, dtype)
    offset = 0
    for t in ts:
        t._tuitune_cast = (None, buffer[offset:offset + t.shape[0]])
        t.__dict__[_IN_STACK] = True
        group[id(t)] = t
        offset += t.shape[0]
    first.__dict__[_STACK] = (ids, buffer)
    return buffer
