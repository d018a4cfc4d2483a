"""tuitune's Triton kernels and their autograd Functions, one operation per module.

The functional API (see each function's docstring)::

    rms_norm(x, weight, eps, *, offset=0.0)
    rope(q, k, cos, sin, position_ids=None) -> (q, k)
    swiglu(gate, up)
    geglu(gate, up, approximate="none" | "tanh")
    cross_entropy(logits, labels, *, ignore_index=-100, softcap=None)
    fused_linear_cross_entropy(hidden, weight, labels, *, ignore_index=-100, softcap=None)
    nf4_dequantize(weight)
    nf4_merge(weight, lora_a, lora_b, scaling)   # dequantize(weight) + scaling * lora_b @ lora_a
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
import sys
from pathlib import Path
from types import ModuleType


def _hand_the_name_to_the_kernels_distribution() -> None:
    """Load Hugging Face's `kernels` package in place of this folder under the top-level name.

    This folder is installed as `tuitune.kernels`. It is reached as plain `kernels` only when the
    checkout's root is on sys.path (pytest's rootdir, `python -m` from the checkout), and then it
    would shadow the `kernels` distribution that transformers (>= 5.25 depends on it) and
    bitsandbytes import by that name.
    """
    from importlib.machinery import PathFinder
    from importlib.util import module_from_spec

    checkout = Path(__file__).resolve().parent.parent
    others = [entry for entry in sys.path if Path(entry or ".").resolve() != checkout]
    spec = PathFinder.find_spec("kernels", others)
    if spec is None or spec.loader is None:
        # Raising here would break transformers < 5.25, whose probe finds this folder's spec and then
        # imports it unguarded. An empty module with no __file__ and no __version__ is what its probe
        # reads as "a namespace folder, not an install", and `from kernels import x` still fails cleanly.
        sys.modules["kernels"] = ModuleType("kernels")
        return
    module = module_from_spec(spec)
    sys.modules["kernels"] = module  # the import statement returns this entry, not this module
    spec.loader.exec_module(module)


if __name__ == "kernels":
    _hand_the_name_to_the_kernels_distribution()

_EXPORTS = {  # exported name -> its module in ops/
    "rms_norm": "rms_norm",
    "rope": "rope",
    "swiglu": "swiglu",
    "geglu": "geglu",
    "cross_entropy": "cross_entropy",
    "fused_linear_cross_entropy": "fused_linear_cross_entropy",
    "nf4_dequantize": "nf4_dequantize",
    "nf4_merge": "nf4_merge",
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
