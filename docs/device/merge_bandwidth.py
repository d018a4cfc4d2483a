"""How close the merged 4-bit dequantization runs to the GPU's memory bandwidth, per tile config
(device diagnostic; run from a tree on PYTHONPATH, one to two minutes on an H100).

    TUITUNE_MERGE_VARIANTS=1 python3 -P docs/device/merge_bandwidth.py

For each llama-8b projection shape: every config of nf4_merge's autotuner forced in turn (with
TUITUNE_MERGE_VARIANTS=1 also the smaller tiles and the WORDS / ACC ways of building a tile), the
autotuner's own pick, the plain word dequantization (nf4_dequantize) and a bf16 device copy of the
output's size (the bandwidth a write-dominated kernel can reach). Bytes counted: the bf16 output
written, the 4-bit codes and the 8-bit nested scales read. Each timing replays a CUDA graph of 20
launches, so the host's launch time hides no kernel (call54's per-launch timings of the q/o and k/v
shapes measured the host). Each forced config's output is checked against the autotuned one's.
"""

import warnings

import torch

warnings.simplefilter("ignore")
import bitsandbytes as bnb  # noqa: E402

from tuitune.kernels.ops import nf4_merge as merge  # noqa: E402
from tuitune.kernels.ops.nf4_dequantize import nf4_dequantize  # noqa: E402

SHAPES = {"gate/up": (14336, 4096), "down": (4096, 14336), "q/o": (4096, 4096), "k/v": (1024, 4096)}
REPLAYS = 20


def graphed_us(fn) -> float:
    """Microseconds a call takes: REPLAYS calls captured in one CUDA graph, the median of 10 replays."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()  # the autotuner and the compiler run here, outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(REPLAYS):
            fn()
    graph.replay()
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / REPLAYS)
    return sorted(times)[len(times) // 2]


def main() -> None:
    print(torch.cuda.get_device_name(), torch.__version__, f"variants {merge.variants_wanted()}")
    for name, (n, k) in SHAPES.items():
        w = bnb.nn.Params4bit((torch.randn(n, k) / k**0.5).to(torch.bfloat16), requires_grad=False, quant_type="nf4",
                              compress_statistics=True, blocksize=64).to("cuda")
        a = torch.randn(16, k, device="cuda", dtype=torch.bfloat16) / 64
        b = torch.randn(n, 16, device="cuda", dtype=torch.bfloat16) / 64
        out = torch.empty(n, k, device="cuda", dtype=torch.bfloat16)
        moved = n * k * 2 + n * k // 2 + n * k // 64  # output, codes, nested scales (bytes)
        rows = [(graphed_us(lambda: merge.nf4_merge(w, a, b, 2.0, out=out)), moved, "autotuned", None)]
        want = out.float().clone()
        for config in merge._configs():
            merge._FORCED = {**config.kwargs, "num_warps": config.num_warps}
            label = f"{config.kwargs} warps {config.num_warps}"
            try:
                us = graphed_us(lambda: merge.nf4_merge(w, a, b, 2.0, out=out))
            except Exception as exc:  # a config this Triton cannot build: say so, go on
                print(f"  {label}: failed: {str(exc).splitlines()[0][:160]}")
                continue
            rows.append((us, moved, label, (out.float() - want).abs().max().item()))
        merge._FORCED = None
        rows.append((graphed_us(lambda: nf4_dequantize(w, torch.bfloat16, out=out)), moved, "plain word dequantization",
                     None))
        src = torch.empty_like(out)
        rows.append((graphed_us(lambda: out.copy_(src)), 2 * n * k * 2, "bf16 copy of the output's size", None))
        print(f"{name} {n}x{k}: {moved / 1e6:.1f} MB a merge")
        for us, nbytes, label, diff in sorted(rows, key=lambda row: row[0]):
            print(f"  {us:8.1f} us  {nbytes / us / 1e3:7.0f} GB/s  {label}" + (f"  max diff {diff:.1e}" if diff else ""))


if __name__ == "__main__":
    main()
