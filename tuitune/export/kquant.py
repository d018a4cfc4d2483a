"""K-quant GGUF files (q4_k_m, q5_k_m, q6_k) through llama.cpp's own quantizer (llama-cpp-python).

gguf-py cannot write K-quants; llama.cpp's `llama_model_quantize` turns the f16 file tuitune wrote
into one. The package is an optional extra; without it the export says how to install it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tuitune.errors import TuituneError

FTYPES = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
          "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}


def require_llamacpp(quant: str) -> None:
    from tuitune.chat.llamacpp_engine import INSTALL_HINT, llamacpp_available

    if not llamacpp_available():
        raise TuituneError(f"GGUF {quant} needs llama.cpp's quantizer, which is not installed. Install it with: "
                           f"{INSTALL_HINT}. Or export gguf with --quant q8_0, f16 or bf16, which need nothing more.")


def quantize(source: Path, target: Path, quant: str) -> None:
    """Write `target` as `quant` from the f16/f32 GGUF `source`."""
    import ctypes

    require_llamacpp(quant)
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPES[quant])
    params.nthread = os.cpu_count() or 1
    with _native_output_to(target.with_name(f".{target.name}.log")) as log:
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
    log.unlink(missing_ok=True)
    if code != 0 or not target.exists():
        raise TuituneError(f"llama.cpp could not quantize {source.name} to {quant} (code {code}: "
                           f"{' / '.join(tail) or 'no message'}). Try another quantization (q8_0 needs no llama.cpp).")


@contextlib.contextmanager
def _native_output_to(path: Path):
    """llama.cpp prints a line per tensor from C: send the process's stdout/stderr to a file meanwhile."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "wb") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield path
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
