"""`training.dequantize_once`: keep QLoRA's 4-bit base weights dequantized for the whole run.

tuitune's fused LoRA projections dequantize each 4-bit base weight every time they use it: in the
forward pass and again in the backward pass (and in the recompute, with checkpointing). With memory
to spare, dequantizing each weight once at the start and keeping the 16-bit copy removes that work
from every step (about 6% of a llama-8b step without recomputation on an H100) at 2 bytes per base
weight (15 GB for llama-8b). The values are the same: the kept copy is the dequantized 4-bit weight,
so training is still QLoRA's, only faster.
"""

from __future__ import annotations

import torch


def keep_base_weights_dequantized(model, dtype: torch.dtype) -> str:
    """Dequantize every 4-bit weight of ``model`` once into ``dtype`` and keep it; say what was kept."""
    from tuitune.kernels.ops.nf4_dequantize import keep_dequantized

    seen: set[int] = set()
    kept_bytes = 0
    for module in model.modules():
        weight = module.__dict__.get("_parameters", {}).get("weight")
        if weight is None or id(weight) in seen or getattr(weight, "quant_state", None) is None:
            continue
        seen.add(id(weight))
        kept_bytes += keep_dequantized(weight, dtype)
    if not seen:
        return "no 4-bit weights to keep dequantized"
    return f"{len(seen)} 4-bit base weights kept dequantized in {str(dtype).removeprefix('torch.')} " \
           f"({kept_bytes / 2**30:.2f} GiB)"


def drop_base_weights_dequantized(model) -> None:
    """Forget the kept copies (their memory is freed once nothing else holds them)."""
    from tuitune.kernels.ops.nf4_dequantize import drop_dequantized

    for module in model.modules():
        weight = module.__dict__.get("_parameters", {}).get("weight")
        if weight is not None:
            drop_dequantized(weight)
