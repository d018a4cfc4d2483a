"""Registers and spills of the LoRA GLU kernels compiled for an H100 (sm_90a), on a machine without a GPU.

    git show a40a792:kernels/ops/lora_glu.py > /tmp/lora_glu.py
    python3 docs/device/kernel_registers.py /tmp/lora_glu.py 8,128,4 32,128,4

(kernels/ops/lora_glu.py was dropped in session 16: see docs/device/glu_speed.py.)

Triton compiles for a target it is given, and its bundled ptxas reports what each tile
(rows, columns, warps) costs: a memory-bound kernel that spills or holds so many registers that few
warps fit on a multiprocessor runs well below the memory bandwidth.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile

POINTERS = ("G", "U", "H", "XAG", "BG", "XAU", "BU", "DH", "DYB", "AD")
FACTORS = ("XAG", "BG", "XAU", "BU", "DYB", "AD")


def _module(path: str):
    text = open(path).read().replace("from .", "from tuitune.kernels.ops.")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location("lora_glu_probe", f.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compile_for_h100(fn, signature: dict, constants: dict, attrs: dict, warps: int):
    """``fn`` (a ``triton.jit`` function) compiled for sm_90 with these argument types, constexprs and
    attributes (merge_registers.py uses it too)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    src = ASTSource(fn=fn, signature=signature, constexprs={(fn.arg_names.index(k),): v for k, v in constants.items()},
                    attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})


def ptxas_report(kernel) -> str:
    """What Triton's bundled ptxas says of a compiled kernel for sm_90a: registers, stack and spills."""
    import triton.backends.nvidia as nvidia

    ptxas = os.path.join(os.path.dirname(nvidia.__file__), "bin", "ptxas")
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(kernel.asm["ptx"])
    out = subprocess.run([ptxas, "-v", "--gpu-name=sm_90a", f.name, "-o", os.devnull], capture_output=True, text=True)
    return " | ".join(line.split("info    :")[-1].strip() for line in (out.stderr + out.stdout).splitlines()
                      if "registers" in line or "spill" in line)


def main() -> None:
    module = _module(sys.argv[1])
    float32_factors = hasattr(module, "_contiguous_float32")  # the rank-r factors go to the kernel in float32
    for tile in sys.argv[2:]:
        rows, cols, warps = map(int, tile.split(","))
        for name, fn in (("forward", module._lora_glu_fwd), ("backward", module._lora_glu_bwd)):
            signature, constants, attrs = {}, {}, {}
            for i, p in enumerate(fn.arg_names):
                if p in POINTERS:
                    signature[p] = "*fp32" if p in FACTORS and float32_factors else "*bf16"
                    attrs[(i,)] = [["tt.divisibility", 16]]  # as Triton specializes aligned pointers
                elif fn.params[i].is_constexpr:
                    signature[p] = "constexpr"
                    constants[p] = {"ACT": 0, "BM": rows, "BN": cols, "RG": 16, "RU": 16, "RD": 16}.get(p, True)
                else:
                    signature[p] = "i32"
                    if p in ("n_cols", "sxg", "sxu", "sdy", "RG", "RU", "RD"):  # and integers that are multiples of 16
                        attrs[(i,)] = [["tt.divisibility", 16]]
            kernel = compile_for_h100(fn, signature, constants, attrs, warps)
            print(f"{rows} x {cols}, {warps} warps, {name}: {ptxas_report(kernel)}")


if __name__ == "__main__":
    main()
