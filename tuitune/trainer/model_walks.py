"""Keep the Hugging Face Trainer from walking the whole model at every step.

Each optimizer step the Trainer counts the model's parameters for its FLOP estimate
(`floating_point_ops` -> `num_parameters`: two walks), hands `model.parameters()` to gradient clipping
and calls `model.zero_grad()` (one walk each). A PEFT model of a 1B base has about 1,300 modules: these
four walks made 48,070 generator calls per step on the H200 (2026-12-05, `bench --trainer --profile 3`;
about 15 ms of own time under cProfile, which inflates such calls) and cost 4.1 ms per step without a
profiler on the 2-core CPU (10.7 ms at an 8B's module count), which a launch-bound step pays in full.
The parameters and what is trainable do not change during a run, so the count and the trainable list
are taken once.
"""

from __future__ import annotations

from typing import Any

SINGLE_MODEL_MODES = ("none", "ddp")  # every rank holds whole parameters: clipping sees plain tensors


def skip_per_step_model_walks(trainer: Any, mode: str) -> None:
    """Give `trainer.model` a remembered parameter count and, where the parameters are whole tensors
    (no sharding), a `zero_grad` and a gradient clip over the trainable list taken once."""
    model = trainer.model
    if hasattr(model, "num_parameters"):
        model.num_parameters = _remembered(model.num_parameters)
    if mode not in SINGLE_MODEL_MODES:
        return
    trainable = [p for p in model.parameters() if p.requires_grad]

    def zero_grad(set_to_none: bool = True) -> None:
        for p in trainable:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    model.zero_grad = zero_grad
    if hasattr(type(trainer), "_clip_grad_norm"):
        trainer._clip_grad_norm = lambda _model: trainer.accelerator.clip_grad_norm_(
            trainable, trainer.args.max_grad_norm)


def _remembered(count):
    counts: dict[tuple[bool, bool], int] = {}

    def num_parameters(only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        key = (only_trainable, exclude_embeddings)
        if key not in counts:
            counts[key] = count(only_trainable=only_trainable, exclude_embeddings=exclude_embeddings)
        return counts[key]

    return num_parameters
