"""How a decoder layer wrapped by enable_checkpointing is called: its own forward, kept aside, and
its training call's arguments; shared by the checkpointed wrapper and the kept-activation graphs."""

from __future__ import annotations

import types

import torch

_INNER = "_tuitune_checkpoint_inner"  # the layer's own forward, kept in its __dict__ while wrapped
_CLASS_FORWARD = object()  # marker: the layer had no instance-level forward before wrapping


def inner_forward(layer):
    """The forward a wrapped layer had before enable_checkpointing wrapped it."""
    inner = layer.__dict__[_INNER]
    return inner if inner is not _CLASS_FORWARD else types.MethodType(type(layer).forward, layer)


def split_training_call(args: tuple, kwargs: dict) -> tuple:
    """A decoder layer's training call as ``(hidden states, other positional arguments, kwargs)``,
    without a KV cache: it would be written twice (forward and recompute), and training needs none."""
    if args:
        hidden, rest = args[0], args[1:]
    else:
        hidden, rest = kwargs.pop("hidden_states"), ()
    for name in ("cache", "past_key_values", "past_key_value", "layer_past"):
        if kwargs.get(name) is not None:
            kwargs[name] = None
    if kwargs.get("use_cache"):
        kwargs["use_cache"] = False
    return hidden, rest, kwargs


def autocast_state(device_type: str) -> tuple:
    """The ambient autocast of ``device_type`` as ``(device type, enabled, dtype)``: what a layer's
    forward ran under, for its recompute, its graphs' signature and their capture."""
    return device_type, torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


class OutputNotATensor(TypeError):
    """A checkpointed decoder layer returned something other than a tensor (checkpointing keeps one)."""

    def __init__(self, out):
        self.kind = type(out).__name__
        super().__init__(f"activation checkpointing expects a decoder layer to return a tensor, got {type(out)}")


_ANCHORS: dict[torch.device, torch.Tensor] = {}


def anchor(device: torch.device) -> torch.Tensor:
    """An empty tensor that requires grad: it makes the layer's output part of the graph even when
    its input (the frozen embeddings' output) does not require grad, so LoRA weights get gradients."""
    t = _ANCHORS.get(device)
    if t is None:
        t = _ANCHORS[device] = torch.empty(0, device=device, requires_grad=True)
    return t
