"""tuitune's Triton kernels and their autograd Functions, one operation per module.

The functional API (see each function's docstring)::

    rms_norm(x, weight, eps, *, offset=0.0)
    rope(q, k, cos, sin, position_ids=None) -> (q, k)
    swiglu(gate, up)
    geglu(gate, up, approximate="none" | "tanh")
    cross_entropy(logits, labels, *, ignore_index=-100, softcap=None)
    fused_linear_cross_entropy(hidden, weight, labels, *, ignore_index=-100, softcap=None)
    nf4_dequantize(weight)
    lora_mlp(x, gate, up, down, activation="swiglu")
    lora_qkv(x, q, k, v) -> (q, k, v)
    lora_o(x, o)

Importing this package imports no kernel module and launches nothing: each name is loaded from its
module on first use. Module names differ from the function names on purpose (importing a submodule
sets an attribute of that name on the package, which must stay the function). This package must never import tuitune or textual.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "rms_norm": "rmsnorm",
    "rope": "rotary",
    "swiglu": "glu_silu",
    "geglu": "glu_gelu",
    "cross_entropy": "chunked_cross_entropy",
    "fused_linear_cross_entropy": "linear_cross_entropy",
    "nf4_dequantize": "nf4",
    "lora_mlp": "fused_lora_mlp",
    "lora_qkv": "fused_lora_qkv",
    "lora_o": "fused_lora_o",
    "LoRAWeights": "lora_weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
