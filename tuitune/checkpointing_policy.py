"""How much to recompute: `training.gradient_checkpointing = "auto"` picks the fastest mode that fits.

Recomputation trades speed for memory. Measured on an H200 with tuitune's kernels (BENCHMARKS.md),
llama-8b QLoRA at batch 2 x 2048 trains at 13,523 tokens/s without recomputation, about 10,600 with
each layer recomputed, and 11,258 with each layer recomputed and its input offloaded to the CPU
(which also moves the input embeddings off the GPU). So "auto" tries the modes fastest first and
takes the first whose memory estimate (tuitune.fit) fits the GPU's free memory with the estimator's
10% margin. For QLoRA with `training.dequantize_once = "auto"`, the first try is no recomputation
with the base weights kept dequantized too (tuitune.dequantize_policy): no per-step dequantization,
at 2 bytes per base weight. Torch-free: the trainer and the form's fit check decide alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tuitune import catalog, dequantize_policy, fit
from tuitune.config import Config

UNKNOWN_FALLBACK = "standard"  # neither the slowest nor the hungriest, when nothing can be estimated


@dataclass(frozen=True)
class CheckpointingChoice:
    mode: str
    reason: str
    needs_gb: dict[str, float] = field(default_factory=dict)  # every mode's estimate, when known
    cuda_graphs: bool = False  # the mode's layers replay as CUDA graphs (GRAPHED_ORDER's choices)
    dequantized: bool = False  # the 4-bit base weights are kept dequantized (tuitune.dequantize_policy)


# Where launches bound the step (tuitune.graphs_policy), the order of speed measured on llama-1b
# QLoRA at batch 2 x 2048 (H100, tokens/s): none with graphs 70,031, standard with graphs 56,698,
# none 52,020 (one call, 2026-12-06); offloaded with graphs 44,500, standard 36,667, offloaded
# 30,243 (2026-12-05); offloaded with graphs, the loss in their pool, 52,231 (2026-12-07).
GRAPHED_ORDER = (("none", True), ("standard", True), ("offloaded", True), ("none", False), ("standard", False),
                 ("offloaded", False))


def estimate_mode(config: Config, spec: catalog.ModelSpec, method: str, optimizer: str,
                  mode: str, cuda_graphs: bool = False, dequantized: bool = False) -> fit.FitEstimate:
    """The estimator's figure for this config with checkpointing `mode`."""
    return fit.estimate(spec, method, batch=config.training.batch_size, seq=config.model.max_seq_length,
                        rank=config.lora.r, checkpointing=mode,
                        fused_loss=config.training.use_kernels and fit.kernels_supported(spec),
                        target_modules=config.lora.target_modules, optimizer=optimizer, cuda_graphs=cuda_graphs,
                        dequantized=dequantized)


def choose_checkpointing(config: Config, method: str, optimizer: str,
                         free_gb: float | None, *, graphs_first: bool = False,
                         dequantized: str = "off") -> CheckpointingChoice:
    """The fastest checkpointing mode whose estimate fits `free_gb` (GPU memory free for training);
    with `graphs_first` (a launch-bound step, tuitune.graphs_policy), the fastest of GRAPHED_ORDER.
    `dequantized` (tuitune.dequantize_policy): "offer" tries no recomputation with the base weights
    kept dequantized first; "on" estimates every mode with them kept; "off" without."""
    spec = catalog.get_model(config.model.name)
    if spec is None or not spec.shape_known:
        return CheckpointingChoice(UNKNOWN_FALLBACK, f"{config.model.name}'s shapes are unknown to the "
                                   f"estimator, so auto keeps {UNKNOWN_FALLBACK} recomputation")
    kept = dequantized == "on"
    if graphs_first and free_gb is not None:
        return _choose_graphed(lambda mode, graphs, keep: estimate_mode(config, spec, method, optimizer, mode,
                                                                        graphs, kept or keep).total_gb, free_gb,
                               offer_dequantized=dequantized == "offer")
    offered = (estimate_mode(config, spec, method, optimizer, "none", dequantized=True).total_gb
               if dequantized == "offer" else None)
    return choose_for_spec(lambda mode: estimate_mode(config, spec, method, optimizer, mode,
                                                      dequantized=kept).total_gb, free_gb,
                           dequantized_need_gb=offered)


def _label(mode: str, graphs: bool) -> str:
    return f"{mode} with CUDA graphs" if graphs else mode


def _choose_graphed(need_gb: Callable[[str, bool, bool], float], free_gb: float, *,
                    offer_dequantized: bool = False) -> CheckpointingChoice:
    """The first of GRAPHED_ORDER that fits; with ``offer_dequantized``, no recomputation with graphs and
    the base weights kept dequantized comes first (llama-1b QLoRA, H100, 2026-12-06: 72,211 tokens/s
    against 69,206 with them 4-bit, for 1.8 GiB more)."""
    options = {_label(mode, graphs): (mode, graphs, False) for mode, graphs in GRAPHED_ORDER}
    if offer_dequantized:
        options = {_label("none", True) + ", base weights dequantized once": ("none", True, True), **options}
    needs = {label: need_gb(mode, graphs, keep) for label, (mode, graphs, keep) in options.items()}
    return _first_fitting(needs, free_gb, options, fastest="the fastest mode of a launch-bound step")


def choose_for_spec(need_gb: Callable[[str], float], free_gb: float | None, *,
                    dequantized_need_gb: float | None = None) -> CheckpointingChoice:
    """The fastest mode of `fit.AUTO_ORDER` whose estimate `need_gb(mode)` fits `free_gb`; with
    `dequantized_need_gb`, no recomputation with the base weights kept dequantized comes first."""
    if free_gb is None:
        return CheckpointingChoice(UNKNOWN_FALLBACK, "the GPU does not report its free memory, so auto "
                                   f"keeps {UNKNOWN_FALLBACK} recomputation")
    needs, options = {}, {}
    if dequantized_need_gb is not None:
        needs[dequantize_policy.LABEL] = dequantized_need_gb
        options[dequantize_policy.LABEL] = ("none", False, True)
    for mode in fit.AUTO_ORDER:
        needs[mode] = need_gb(mode)
        options[mode] = (mode, False, False)
    return _first_fitting(needs, free_gb, options, fastest="the fastest mode")


def _first_fitting(needs: dict[str, float], free_gb: float, options: dict[str, tuple[str, bool, bool]], *,
                   fastest: str) -> CheckpointingChoice:
    """The first option of `needs` (label -> estimate, fastest first) that fits `free_gb`, else the last;
    `options` gives each label's (mode, CUDA graphs, base weights kept dequantized)."""
    label = fit.fastest_fitting_mode(needs, free_gb)
    mode, graphs, dequantized = options[label]
    if fit.fit_status(needs[label], free_gb) != "fits":
        return CheckpointingChoice(mode, f"{mode}: no mode fits {free_gb:.1f} GB free (the lightest, {mode}, "
                                   f"needs about {needs[label]:.1f} GB)", needs)
    labels = list(needs)
    faster = labels[:labels.index(label)]
    why = (fastest if not faster else "the fastest mode that fits (" + ", ".join(
        f"{other} needs {needs[other]:.1f} GB" for other in faster) + ")")
    return CheckpointingChoice(mode, f"{label}, {why}; about {needs[label]:.1f} GB of {free_gb:.1f} GB free",
                               needs, graphs, dequantized)
