"""Will it fit on several GPUs? Per-GPU memory under DDP, FSDP2 and DeepSpeed ZeRO, by arithmetic on the
one-GPU estimate of tuitune.fit (no torch), and the mode tuitune would pick.

- ddp: every GPU holds the whole model, its adapters, gradients and optimizer state, plus the gradient
  buckets DDP all-reduces (one more copy of the trainable gradients).
- zero2: weights whole on each GPU; gradients and optimizer state split over the GPUs.
- fsdp, zero3: weights, adapters, gradients and optimizer state split over the GPUs, plus the layers
  gathered whole around the one computing (FSDP2 prefetches the next; two layers counted).
Activations and logits belong to each GPU's own micro-batch, so they do not shrink. The communication
buffers (NCCL) are a flat allowance, not yet measured on two GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuitune.catalog import ModelSpec
from tuitune.distributed_fields import SHARDED_WEIGHTS
from tuitune.fit import FitEstimate, estimate, fit_status

COMM_BUFFERS_GB = 0.5   # NCCL and bucket allowance per GPU (to calibrate on two GPUs)
GATHERED_LAYERS = 2     # FSDP2/ZeRO-3 hold this many layers unsharded at once
MODES = ("ddp", "zero2", "fsdp", "zero3")
PREFERENCE = ("ddp", "fsdp")  # what `auto` tries, fastest first: replicate if it fits, else shard


@dataclass(frozen=True)
class GpuShare:
    mode: str
    gpus: int
    per_gpu_gb: float
    breakdown: dict[str, float]


def per_gpu(one: FitEstimate, spec: ModelSpec, mode: str, gpus: int) -> GpuShare:
    """Memory on each of `gpus` GPUs for the run `one` estimates on a single GPU."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    gpus = max(1, gpus)
    parts = dict(one.breakdown)
    if mode == "ddp":
        parts["overhead"] = parts.get("overhead", 0.0) + parts.get("gradients", 0.0) + COMM_BUFFERS_GB
        return GpuShare(mode, gpus, sum(parts.values()), parts)
    for name in ("gradients", "optimizer"):
        parts[name] = parts.get(name, 0.0) / gpus
    if mode in SHARDED_WEIGHTS:
        layer = parts.get("weights", 0.0) / max(spec.layers, 1)
        parts["weights"] = parts.get("weights", 0.0) / gpus + min(GATHERED_LAYERS, spec.layers) * layer
        parts["lora"] = parts.get("lora", 0.0) / gpus
    parts["overhead"] = parts.get("overhead", 0.0) + COMM_BUFFERS_GB
    return GpuShare(mode, gpus, sum(parts.values()), parts)


def shares(spec: ModelSpec, method: str, gpus: int, **fit_kwargs) -> dict[str, GpuShare]:
    """Every mode's per-GPU memory for `method` on `gpus` GPUs (fit_kwargs go to fit.estimate)."""
    one = estimate(spec, method, **fit_kwargs)
    return {mode: per_gpu(one, spec, mode, gpus) for mode in MODES}


def pick_mode(spec: ModelSpec, method: str, gpus: int, free_gb: float, **fit_kwargs) -> tuple[str, GpuShare | None]:
    """The mode tuitune would pick on `gpus` GPUs of `free_gb` each: ddp when the model fits one GPU
    (fastest: no weight traffic), else fsdp (sharded); ("none", None) for one GPU; ("does not fit", best)
    when neither fits."""
    if gpus <= 1:
        return "none", None
    every = shares(spec, method, gpus, **fit_kwargs)
    for mode in PREFERENCE:
        if fit_status(every[mode].per_gpu_gb, free_gb) == "fits":
            return mode, every[mode]
    return "does not fit", min(every.values(), key=lambda share: share.per_gpu_gb)


def several_gpus_line(spec: ModelSpec, method: str, gpus: int, chosen: str, free_gb: float,
                      **fit_kwargs) -> str | None:
    """One line for the Models screen when the run uses several GPUs: the chosen mode's (or the picked
    mode's, for none) per-GPU need, and what tuitune would pick. None for one GPU or an unknown shape."""
    if gpus <= 1 or not spec.shape_known:
        return None
    picked, _ = pick_mode(spec, method, gpus, free_gb, **fit_kwargs)
    mode = chosen if chosen in MODES else (picked if picked in MODES else "fsdp")
    share = shares(spec, method, gpus, **fit_kwargs)[mode]
    status = fit_status(share.per_gpu_gb, free_gb)
    pick = (f"tuitune would pick {picked}" if picked in MODES
            else "no mode fits: more GPUs, QLoRA or a shorter sequence")
    return (f"On {gpus} GPUs, {mode}: {share.per_gpu_gb:.1f} GiB per GPU for {method.upper()} ({status}); "
            f"{pick}")
