"""Where a training step's time goes on the GPU: a CUDA profile of a few steps, sorted into kinds.

`profile_steps(step_fn, steps)` runs ``step_fn`` under `torch.profiler` and sorts every CUDA kernel
into one of: base GEMMs (the frozen weights' products), adapter GEMMs (a rank-r dimension), loss
(products with the vocabulary and the cross-entropy kernels), attention, dequantization, copies,
norm/rope/activation kernels, optimizer, and other. Idle is the wall time of the profiled steps
minus the kernels' summed time on the compute stream. Imports torch: bench measuring processes (tuitune.bench.measure) only.
"""

from __future__ import annotations

import re
import time

_ATTENTION = re.compile(r"flash|fmha|attention|sdpa|cudnn_generated|mha", re.I)
_DEQUANT = re.compile(r"dequant", re.I)
_LOSS = re.compile(r"_ce_fwd|_ce_bwd|cross_entropy|log_softmax|nll_loss", re.I)
_COPY = re.compile(r"copy|memcpy|memset|cat|index|gather|scatter|fill", re.I)
_OPTIM = re.compile(r"adam|optimizer|multi_tensor|kOptimizer|8bit", re.I)
_FUSED = re.compile(r"rms_norm|rope|swiglu|geglu|layer_norm|rms|silu|rotary", re.I)
_GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::addmm_")


def _gemm_kind(shapes, rank_max: int, vocab: int) -> str:
    dims = [d for s in shapes or [] if s for d in s]
    if vocab and vocab in dims:
        return "loss"
    two_d = [s for s in shapes or [] if s and len(s) == 2]
    if any(min(s) <= rank_max for s in two_d):
        return "adapter GEMMs"
    return "base GEMMs"


def classify(op_name: str, kernel_name: str, shapes, rank_max: int, vocab: int) -> str:
    if op_name in _GEMM_OPS or "gemm" in kernel_name.lower() or "nvjet" in kernel_name.lower():
        if op_name in _GEMM_OPS:
            return _gemm_kind(shapes, rank_max, vocab)
        return "base GEMMs"
    if _DEQUANT.search(kernel_name):
        return "dequantization"
    if _ATTENTION.search(kernel_name) or "attention" in op_name:
        return "attention"
    if _LOSS.search(kernel_name):
        return "loss"
    if _OPTIM.search(kernel_name) or "optim" in op_name.lower():
        return "optimizer"
    if _FUSED.search(kernel_name):
        return "norm/rope/activation"
    if _COPY.search(kernel_name) or op_name in ("aten::copy_", "aten::to", "aten::_to_copy", "aten::contiguous"):
        return "copies"
    return "other elementwise"


def profile_steps(step_fn, steps: int, *, rank_max: int = 64, vocab: int = 0) -> dict:
    """Profile ``steps`` calls of ``step_fn`` (each one full training step). Times in milliseconds."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step_fn()
        torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - start) * 1000
    kinds: dict[str, float] = {}
    kernels: dict[str, list] = {}
    counted = 0
    for evt in prof.events():
        for k in getattr(evt, "kernels", []) or []:
            kind = classify(evt.name, k.name, evt.input_shapes, rank_max, vocab)
            us = k.duration
            kinds[kind] = kinds.get(kind, 0.0) + us / 1000
            entry = kernels.setdefault(k.name[:90], [0, 0.0, kind])
            entry[0] += 1
            entry[1] += us / 1000
            counted += 1
    busy = sum(kinds.values())
    top = sorted(kernels.items(), key=lambda kv: -kv[1][1])[:25]
    return {
        "steps": steps, "wall_ms": wall_ms, "kernel_ms": busy, "kernels": counted,
        "idle_ms": max(0.0, wall_ms - busy), "idle_fraction": max(0.0, wall_ms - busy) / wall_ms if wall_ms else None,
        "by_kind_ms": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
        "top_kernels": [{"name": n, "calls": c, "ms": ms, "kind": kind} for n, (c, ms, kind) in top],
    }


def format_profile(p: dict) -> str:
    lines = [f"{p['steps']} steps: wall {p['wall_ms']:.1f} ms, kernels {p['kernel_ms']:.1f} ms "
             f"({p['kernels']} launches), idle {p['idle_ms']:.1f} ms ({100 * (p['idle_fraction'] or 0):.1f}%)"]
    for kind, ms in p["by_kind_ms"].items():
        lines.append(f"  {kind:24}{ms:10.1f} ms  {100 * ms / p['wall_ms']:5.1f}%")
    return "\n".join(lines)
