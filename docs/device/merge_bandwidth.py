"""How close the merged 4-bit dequantization runs to the GPU's memory bandwidth, per tile config
(device diagnostic; run from a tree on PYTHONPATH, about 40 s on an H100).

    python3 -P docs/device/merge_bandwidth.py

For each llama-8b projection shape: every config of nf4_merge's autotuner forced in turn, the
autotuner's own pick, the plain word dequantization (nf4_dequantize) and a bf16 device copy of the
output's size (the bandwidth a write-dominated kernel can reach). Bytes counted: the bf16 output
written, the 4-bit codes and the 8-bit nested scales read. Merged dequantization took 22.3 ms of a
321 ms llama-8b step on the H100 (2026-12-07), about half of what the bandwidth allows.
"""

import warnings

import torch

warnings.simplefilter("ignore")
import bitsandbytes as bnb  # noqa: E402

from tuitune.kernels.ops import nf4_merge as merge  # noqa: E402
from tuitune.kernels.ops._launch import bench_in_place  # noqa: E402
from tuitune.kernels.ops.nf4_dequantize import nf4_dequantize  # noqa: E402

SHAPES = {"q/o": (4096, 4096), "k/v": (1024, 4096), "gate/up": (14336, 4096), "down": (4096, 14336)}


def timed(fn) -> float:
    """Seconds a call takes: the median of the autotuner's in-place timing (``_launch.bench_in_place``)."""
    return bench_in_place(fn, quantiles=(0.5,))[0] / 1e3


def main() -> None:
    print(torch.cuda.get_device_name(), torch.__version__)
    for name, (n, k) in SHAPES.items():
        w = bnb.nn.Params4bit((torch.randn(n, k) / k**0.5).to(torch.bfloat16), requires_grad=False, quant_type="nf4",
                              compress_statistics=True, blocksize=64).to("cuda")
        a = torch.randn(16, k, device="cuda", dtype=torch.bfloat16) / 64
        b = torch.randn(n, 16, device="cuda", dtype=torch.bfloat16) / 64
        out = torch.empty(n, k, device="cuda", dtype=torch.bfloat16)
        moved = n * k * 2 + n * k // 2 + n * k // 64  # output, codes, nested scales (bytes)
        rows = []  # (seconds, bytes moved, label)
        for config in merge._configs():
            merge._FORCED = {**config.kwargs, "num_warps": config.num_warps}
            label = f"{config.kwargs} warps {config.num_warps}"
            rows.append((timed(lambda: merge.nf4_merge(w, a, b, 2.0, out=out)), moved, label))
        merge._FORCED = None
        rows.append((timed(lambda: merge.nf4_merge(w, a, b, 2.0, out=out)), moved, "autotuned"))
        rows.append((timed(lambda: nf4_dequantize(w, torch.bfloat16, out=out)), moved, "plain word dequantization"))
        src = torch.empty_like(out)
        rows.append((timed(lambda: out.copy_(src)), 2 * n * k * 2, "bf16 copy of the output's size"))
        print(f"{name} {n}x{k}: {moved / 1e6:.1f} MB a merge")
        for seconds, nbytes, label in sorted(rows):
            print(f"  {seconds * 1e6:8.1f} us  {nbytes / seconds / 1e9:7.0f} GB/s  {label}")

if __name__ == "__main__":
    main()
