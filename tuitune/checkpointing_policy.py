"""How much to recompute: `training.gradient_checkpointing = "auto"` picks the fastest mode that fits.

Recomputation trades speed for memory. Measured on an H200 with tuitune's kernels (BENCHMARKS.md),
llama-8b QLoRA at batch 2 x 2048 trains at 13,523 tokens/s without recomputation, about 10,600 with
each layer recomputed, and 11,258 with each layer recomputed and its input offloaded to the CPU
(which also moves the input embeddings off the GPU). So "auto" tries the modes fastest first and
takes the first whose memory estimate (tuitune.fit) fits the GPU's free memory with the estimator's
10% margin. Torch-free: the trainer and the form's fit check decide alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tuitune import catalog, fit
from tuitune.config import Config

UNKNOWN_FALLBACK = "standard"  # neither the slowest nor the hungriest, when nothing can be estimated


@dataclass(frozen=True)
class CheckpointingChoice:
    mode: str
    reason: str
    needs_gb: dict[str, float] = field(default_factory=dict)  # every mode's estimate, when known


def estimate_mode(config: Config, spec: catalog.ModelSpec, method: str, optimizer: str,
                  mode: str) -> fit.FitEstimate:
    """The estimator's figure for this config with checkpointing `mode`."""
    return fit.estimate(spec, method, batch=config.training.batch_size, seq=config.model.max_seq_length,
                        rank=config.lora.r, checkpointing=mode,
                        fused_loss=config.training.use_kernels and fit.kernels_supported(spec),
                        target_modules=config.lora.target_modules, optimizer=optimizer)


def choose_checkpointing(config: Config, method: str, optimizer: str,
                         free_gb: float | None) -> CheckpointingChoice:
    """The fastest checkpointing mode whose estimate fits `free_gb` (GPU memory free for training)."""
    spec = catalog.get_model(config.model.name)
    if spec is None or not spec.shape_known:
        return CheckpointingChoice(UNKNOWN_FALLBACK, f"{config.model.name}'s shapes are unknown to the "
                                   f"estimator, so auto keeps {UNKNOWN_FALLBACK} recomputation")
    return choose_for_spec(lambda mode: estimate_mode(config, spec, method, optimizer, mode).total_gb, free_gb)


def choose_for_spec(need_gb: Callable[[str], float], free_gb: float | None) -> CheckpointingChoice:
    """The fastest mode of `fit.AUTO_ORDER` whose estimate `need_gb(mode)` fits `free_gb`."""
    if free_gb is None:
        return CheckpointingChoice(UNKNOWN_FALLBACK, "the GPU does not report its free memory, so auto "
                                   f"keeps {UNKNOWN_FALLBACK} recomputation")
    needs = {mode: need_gb(mode) for mode in fit.AUTO_ORDER}
    mode = fit.fastest_fitting_mode(needs, free_gb)
    if fit.fit_status(needs[mode], free_gb) != "fits":
        return CheckpointingChoice(mode, f"{mode}: no mode fits {free_gb:.1f} GB free (the lightest, {mode}, "
                                   f"needs about {needs[mode]:.1f} GB)", needs)
    faster = fit.AUTO_ORDER[:fit.AUTO_ORDER.index(mode)]
    why = ("the fastest mode" if not faster else "the fastest mode that fits (" + ", ".join(
        f"{m} needs {needs[m]:.1f} GB" for m in faster) + ")")
    return CheckpointingChoice(mode, f"{mode}, {why}; about {needs[mode]:.1f} GB of {free_gb:.1f} GB free", needs)
