"""The mark of a causal LM whose loss is tuitune's fused forward (set by `patching._patch_lm_head`).
The LM head's offload, the graphs' pool lent to the loss and the batch facts serve only such a model."""

from __future__ import annotations

FUSED_FORWARD = "_tuitune_forward"  # the causal LM's own attribute: the fused forward, bound to it


def fused_loss_installed(model) -> bool:
    """Whether ``model`` (a PEFT model or a transformers causal LM) computes its loss through the fused
    forward."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.__dict__.get(FUSED_FORWARD) is not None
