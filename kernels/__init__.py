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

Importing this package imports no kernel module and launches nothing: each name is loaded on first
use from its module in `ops/`, named after the function (`ops/rms_norm.py` provides `rms_norm`). The
modules live in that subpackage so that importing one (which sets an attribute of its name on its
package) never hides the function of the same name here. This package must never import tuitune or
textual.
"""

from __future__ import annotations

import importlib

_EXPORTS = {  # exported name -> its module in ops/
    "rms_norm": "rms_norm",
    "rope": "rope",
    "swiglu": "swiglu",
    "geglu": "geglu",
    "cross_entropy": "cross_entropy",
    "fused_linear_cross_entropy": "fused_linear_cross_entropy",
    "nf4_dequantize": "nf4_dequantize",
    "lora_mlp": "lora_mlp",
    "lora_qkv": "lora_qkv",
    "lora_o": "lora_o",
    "LoRAWeights": "lora_weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.ops.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
