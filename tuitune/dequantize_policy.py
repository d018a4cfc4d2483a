"""Whether a QLoRA run keeps its 4-bit base weights dequantized (`training.dequantize_once`).

tuitune's kernels dequantize every 4-bit base weight each time they use it: once in the forward
pass and once in the backward pass without recomputation. Kept dequantized in 16-bit, the weights
cost 2 bytes each more (15 GB for llama-8b) and the step loses that work. `auto` offers it to
`gradient_checkpointing = "auto"` as its fastest choice (no recomputation of activations or weights)
and, with `gradient_checkpointing = "none"` asked for, keeps the weights dequantized when the run
still fits; a run that recomputes activations to save memory keeps them 4-bit. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuitune import catalog, fit
from tuitune.config import Config

LABEL = "none, base weights dequantized once"


@dataclass(frozen=True)
class DequantizeChoice:
    on: bool
    reason: str


def why_not(config: Config, *, device: str, method: str) -> str | None:
    """Why this run cannot keep its base weights dequantized, or None when it can."""
    if method != "qlora":
        return "only QLoRA keeps 4-bit base weights"
    if device != "cuda":
        return "the kernels that read the kept weights need a CUDA GPU"
    if not config.training.use_kernels:
        return "tuitune's kernels read the kept weights, and training.use_kernels is off"
    if config.training.distributed != "none":
        return f"{config.training.distributed} places the 4-bit weights itself"
    spec = catalog.get_model(config.model.name)
    if spec is not None and not fit.kernels_supported(spec):
        return f"tuitune has no kernels for {spec.architecture}"
    return None


def offered_to_auto(config: Config, *, device: str, method: str) -> bool:
    """Whether `gradient_checkpointing = "auto"` tries "none, base weights dequantized once" first."""
    return config.training.dequantize_once == "auto" and why_not(config, device=device, method=method) is None


def choose_dequantize(config: Config, *, device: str, method: str, checkpointing: str, free_gb: float | None,
                      need_gb: float | None = None, picked_by_auto: bool | None = None) -> DequantizeChoice:
    """Resolve `training.dequantize_once` once the checkpointing mode is known. ``need_gb``: the run's
    estimate with the weights kept dequantized; ``picked_by_auto``: what `gradient_checkpointing =
    "auto"` decided, when it decided."""
    wanted = config.training.dequantize_once
    if wanted == "off":
        return DequantizeChoice(False, "off (training.dequantize_once = off)")
    blocked = why_not(config, device=device, method=method)
    if blocked:
        return DequantizeChoice(False, f"off: {blocked}")
    if wanted == "on":
        return DequantizeChoice(True, "on (training.dequantize_once = on)")
    if picked_by_auto is not None:
        return DequantizeChoice(picked_by_auto, "on (chosen with the checkpointing mode)" if picked_by_auto
                                else "off (chosen with the checkpointing mode)")
    if checkpointing != "none":
        return DequantizeChoice(False, f"off: {checkpointing} recomputation is there to save memory")
    if need_gb is None or free_gb is None:
        return DequantizeChoice(False, "off: the run's memory cannot be estimated against the GPU's free memory")
    if fit.fit_status(need_gb, free_gb) != "fits":
        return DequantizeChoice(False, f"off: kept dequantized, the run would need about {need_gb:.1f} GB of "
                                       f"{free_gb:.1f} GB free")
    return DequantizeChoice(True, f"on: the run needs about {need_gb:.1f} GB of {free_gb:.1f} GB free with them")
