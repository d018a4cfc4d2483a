"""Whether the trainer replays its layers as CUDA graphs (`training.cuda_graphs`): recomputed ones
(tuitune.trainer.layer_graphs) or, without recomputation, ones that keep their activations
(tuitune.trainer.kept_layer_graphs).

A graph replaces a layer's few hundred kernel launches by one, which pays where launches, not the
GPU, bound the step, and costs one layer's working memory kept aside. Measured on an H100 with
full recomputation at batch 2 x 2048 (BENCHMARKS.md, 2026-12-05): llama-1b QLoRA went from 30,243
to 44,500 tokens/s (offloaded) and from 36,667 to 51,433 (standard) for a 0.51 GiB pool, while
llama-8b's step, whose layers keep the GPU busy anyway, stayed within 1% (10,077 and 10,186) for a
1.10 GiB pool. So `auto` turns them on for layers that little work per step (below
``LAUNCH_BOUND_WORK``) when the memory estimate with the pool still fits. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuitune import catalog, fit
from tuitune.checkpointing_policy import estimate_mode
from tuitune.config import Config

# Tokens per step times one layer's parameters: llama-1b at 4,096 tokens is 2.5e11 (graphs 1.4x
# faster), llama-8b 8.9e11 (no faster). Between the two nothing was measured; stay eager there.
LAUNCH_BOUND_WORK = 4e11


@dataclass(frozen=True)
class GraphsChoice:
    on: bool
    reason: str


def layer_params(spec: catalog.ModelSpec) -> float:
    """Parameters of one decoder layer (the whole model less its embeddings, spread evenly)."""
    embeddings = spec.vocab * spec.hidden * (1 if spec.tied_embeddings else 2)
    return max(spec.params_b * 1e9 - embeddings, 0.0) / max(spec.layers, 1)


def _why_not(config: Config, spec, device: str, checkpointing: str) -> str | None:
    """Why this run cannot replay its layers as graphs, or None when it can."""
    if device != "cuda":
        return "they need a CUDA GPU"
    if not config.training.use_kernels:
        return "they replay tuitune's kernels, and training.use_kernels is off"
    if config.training.distributed != "none":
        return f"{config.training.distributed} synchronises gradients as they are made, which a replay bypasses"
    if config.data.packing:
        return "packed rows change their boundaries every batch, and a graph replays only a shape it has seen"
    if config.training.objective == "orpo":
        return "ORPO's batches take the length of their longest pair, so their shapes rarely repeat"
    if spec is not None and not fit.kernels_supported(spec):
        return f"tuitune has no kernels for {spec.architecture}"
    return None


def _work(config: Config, spec: catalog.ModelSpec) -> float:
    return config.training.batch_size * config.model.max_seq_length * layer_params(spec)


def graphs_first(config: Config, device: str) -> bool:
    """Whether `gradient_checkpointing = "auto"` should try the graphed modes before the others: the
    step is launch-bound (or graphs are asked for) and nothing rules them out."""
    wanted = config.training.cuda_graphs
    spec = catalog.get_model(config.model.name)
    if wanted == "off" or spec is None or not spec.shape_known or _why_not(config, spec, device, "standard"):
        return False
    return wanted == "on" or _work(config, spec) <= LAUNCH_BOUND_WORK


def choose_cuda_graphs(config: Config, *, device: str, method: str, optimizer: str, checkpointing: str,
                       free_gb: float | None) -> GraphsChoice:
    """Resolve `training.cuda_graphs` for a run whose checkpointing mode is already chosen."""
    wanted = config.training.cuda_graphs
    if wanted == "off":
        return GraphsChoice(False, "off (training.cuda_graphs = off)")
    spec = catalog.get_model(config.model.name)
    why_not = _why_not(config, spec, device, checkpointing)
    if why_not:
        return GraphsChoice(False, f"off: {why_not}")
    if wanted == "on":
        return GraphsChoice(True, "on (training.cuda_graphs = on)")
    if spec is None or not spec.shape_known:
        return GraphsChoice(False, f"off: {config.model.name}'s shapes are unknown to the estimator")
    work = _work(config, spec)
    if work > LAUNCH_BOUND_WORK:
        return GraphsChoice(False, "off: each layer's work keeps the GPU busy between launches "
                                   f"({work:.1e} token-parameters per step, graphs pay below {LAUNCH_BOUND_WORK:.0e})")
    need = estimate_mode(config, spec, method, optimizer, checkpointing, cuda_graphs=True).total_gb
    if free_gb is None:
        return GraphsChoice(False, "off: the GPU does not report its free memory")
    if fit.fit_status(need, free_gb) != "fits":
        return GraphsChoice(False, f"off: with their memory the run needs about {need:.1f} GB of {free_gb:.1f} GB free")
    return GraphsChoice(True, f"on: launches bound this step, and with the graphs' memory it needs about "
                              f"{need:.1f} GB of {free_gb:.1f} GB free")
