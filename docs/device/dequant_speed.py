"""How near the NF4 dequantization runs to the GPU's memory bandwidth, at llama-8b's weight shapes.

    python3 docs/device/dequant_speed.py

For each shape: tuitune's kernel and bitsandbytes' own dequantize_4bit (ms, and GB/s counting 0.5 byte
read and 2 bytes written per element), and a bf16 copy of the same output size as the practical ceiling.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also under python3 -P
from cuda_timing import ms_per_call  # noqa: E402


def _ms(fn) -> float:
    return ms_per_call(fn, reps=50)


def main() -> None:
    import bitsandbytes as bnb
    import bitsandbytes.functional as F

    from tuitune.kernels import nf4_dequantize

    for rows, cols in ((14336, 4096), (4096, 14336), (4096, 4096), (1024, 4096)):
        w = torch.randn(rows, cols, dtype=torch.bfloat16) / cols**0.5
        p = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4", compress_statistics=True,
                              blocksize=64).to("cuda")
        out = torch.empty(rows, cols, dtype=torch.bfloat16, device="cuda")
        src = torch.empty_like(out)
        gb = rows * cols * 2.5 / 1e9
        ours = _ms(lambda: nf4_dequantize(p, torch.bfloat16, out=out))
        theirs = _ms(lambda: F.dequantize_4bit(p.data, p.quant_state))
        copy = _ms(lambda: out.copy_(src))
        print(f"{rows:>6} x {cols:<6} tuitune {ours:.3f} ms ({gb / ours:.0f} GB/s)  bitsandbytes {theirs:.3f} ms "
              f"({gb / theirs:.0f} GB/s)  bf16 copy {copy:.3f} ms ({rows * cols * 4 / 1e6 / copy:.0f} GB/s)")


if __name__ == "__main__":
    main()
