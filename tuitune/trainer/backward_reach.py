"""Whether a layer's backward stays inside the layer: a CUDA graph of it adds gradients only into the
tensors it was captured with, so one that reaches any other trainable tensor would lose that gradient
(tuitune.trainer.layer_graphs and kept_layer_graphs then run the layer eagerly)."""

from __future__ import annotations

import torch


def reaches_outside(out: torch.Tensor, owned: list[torch.Tensor]) -> str | None:
    """Why a graphed backward from ``out`` would lose a gradient: its autograd graph reaches a
    trainable tensor other than ``owned`` (the layer's parameters and its input); None if it does not."""
    ids = {id(t) for t in owned}
    seen, stack = set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        var = getattr(fn, "variable", None)
        if var is not None and id(var) not in ids:
            return "a trainable tensor outside the layer"
        stack.extend(f for f, _ in fn.next_functions)
    return None
