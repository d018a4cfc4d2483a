"""Registers, spills and shared memory of nf4_merge's tile configs compiled for an H100 (sm_90a), on
a machine without a GPU; it also proves that each config builds.

    TUITUNE_MERGE_VARIANTS=1 python3 docs/device/merge_registers.py

Shared memory is where a layout conversion shows: the rank-r dot's result and the dequantized tile
live in different register layouts, and Triton moves one into the other through shared memory.
"""

from __future__ import annotations

from kernel_registers import compile_for_h100, ptxas_report  # this folder is the script's sys.path[0]

POINTERS = {"Q": "*u8", "CODE": "*fp32", "ABSMAX": "*u8", "CODE2": "*fp32", "ABSMAX2": "*fp32", "A": "*bf16",
            "B": "*bf16", "OUT": "*bf16"}
FLOATS = ("offset", "scaling")
FIXED = {"NESTED": True, "BS": 64, "BS2": 256, "R": 16, "IEEE": False, "WORDS_OK": True}


def main() -> None:
    from tuitune.kernels.ops import nf4_merge as merge

    fn = merge._dequant_merge.fn
    for config in merge._configs():
        constants = {**FIXED, **config.kwargs}
        signature, attrs = {}, {}
        for i, p in enumerate(fn.arg_names):
            if p in POINTERS:
                signature[p] = POINTERS[p]
                attrs[(i,)] = [["tt.divisibility", 16]]  # as Triton specializes aligned pointers
            elif fn.params[i].is_constexpr:
                signature[p] = "constexpr"
            elif p in FLOATS:
                signature[p] = "fp32"
            else:
                signature[p] = "i32"
                if p in ("N", "K", "stride_an", "stride_bn", "stride_on", "r"):  # multiples of 16 at llama's shapes
                    attrs[(i,)] = [["tt.divisibility", 16]]
        label = (f"{config.kwargs['BLOCK_N']:>3} x {config.kwargs['BLOCK_K']}, {config.num_warps} warps, "
                 f"bytes={int(not config.kwargs['WORDS'])} by_byte={int(config.kwargs['BY_BYTE'])} "
                 f"words={int(config.kwargs['WORDS'])} acc={int(config.kwargs['ACC'])}")
        try:
            kernel = compile_for_h100(fn, signature, constants, attrs, config.num_warps)
        except Exception as exc:  # a config that does not build: the autotuner would fail on it too
            print(f"{label}: DOES NOT BUILD: {str(exc).splitlines()[0][:200]}")
            continue
        print(f"{label}: shared {kernel.metadata.shared} B | {ptxas_report(kernel)}")


if __name__ == "__main__":
    main()
