"""Which way of building the merged 4-bit weight tile runs nearest the memory bandwidth (device
experiment; run from a tree on PYTHONPATH, about 90 s on an H100).

    python3 -P docs/device/merge_variants.py

merge_bandwidth.py (2026-12-07, H100) found nf4_merge at 1,630 to 1,740 GB/s on llama-8b's MLP
shapes where the plain word dequantization reaches 2,650: 30 us more per merge, and the smallest tile
(64 x 128, 4 warps) the fastest. Two changes are tried here, on a copy of the kernel, each alone and
together, over a grid of tiles:

- WORDS: read the codes as 32-bit words, eight elements a lane, as ``_dequant_4bit_words`` does,
  instead of bytes split into two nibble tensors and interleaved;
- ACC: let the rank-r ``tl.dot`` accumulate into the dequantized tile (``acc=``), so that the tile
  is built once in the dot's layout instead of the dot's result being moved to the tile's layout.

Every timing replays a CUDA graph of 20 launches (the host's launch cost would otherwise hide the
small shapes' kernels). Each variant's output is checked against nf4_merge's.
"""

import warnings

import torch
import triton
import triton.language as tl

warnings.simplefilter("ignore")
import bitsandbytes as bnb  # noqa: E402

from tuitune.kernels.ops import nf4_merge as merge  # noqa: E402
from tuitune.kernels.ops.nf4_dequantize import _block_scale, _decoded, nf4_dequantize  # noqa: E402

SHAPES = {"gate/up": (14336, 4096), "down": (4096, 14336), "q/o": (4096, 4096), "k/v": (1024, 4096)}
TILES = [(16, 128, 2), (32, 128, 2), (32, 128, 4), (64, 128, 2), (64, 128, 4), (128, 128, 4), (32, 256, 4)]
REPLAYS = 20


@triton.jit
def _merge_variant(Q, CODE, ABSMAX, CODE2, ABSMAX2, A, B, OUT, N, K, offset, scaling,
                   stride_an, stride_ak, stride_bn, stride_br, stride_on, r,
                   NESTED: tl.constexpr, BS: tl.constexpr, BS2: tl.constexpr, R: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, WORDS: tl.constexpr, ACC: tl.constexpr):
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row = n < N
    kb = tl.program_id(1) * (BLOCK_K // BS) + tl.arange(0, BLOCK_K // BS)
    block = n[:, None].to(tl.int64) * (K // BS) + kb[None, :]
    scale = _block_scale(ABSMAX, CODE2, ABSMAX2, block, row[:, None] & (kb[None, :] < K // BS), BS2, offset, NESTED)
    if WORDS:
        w = tl.program_id(1) * (BLOCK_K // 8) + tl.arange(0, BLOCK_K // 8)
        word = tl.load(Q.to(tl.pointer_type(tl.int32)) + n[:, None].to(tl.int64) * (K // 8) + w[None, :],
                       mask=row[:, None] & (w[None, :] < K // 8), other=0)
        e = tl.arange(0, 8)
        shift = 8 * (e // 2) + 4 * (1 - e % 2)
        nib = (word[:, :, None] >> shift[None, None, :]) & 15
        value = tl.load(CODE + nib)
        value = tl.reshape(value, [BLOCK_N, BLOCK_K // BS, BS // 8, 8]) * scale[:, :, None, None]
        base = tl.reshape(value, [BLOCK_N, BLOCK_K])
    else:
        half = tl.program_id(1) * (BLOCK_K // 2) + tl.arange(0, BLOCK_K // 2)
        byte_mask = row[:, None] & (half[None, :] < K // 2)
        byte = tl.load(Q + n[:, None].to(tl.int64) * (K // 2) + half[None, :], mask=byte_mask, other=0).to(tl.int32)
        hi = tl.load(CODE + (byte >> 4), mask=byte_mask, other=0.0)
        lo = tl.load(CODE + (byte & 15), mask=byte_mask, other=0.0)
        hi = tl.reshape(tl.reshape(hi, [BLOCK_N, BLOCK_K // BS, BS // 2]) * scale[:, :, None], [BLOCK_N, BLOCK_K // 2])
        lo = tl.reshape(tl.reshape(lo, [BLOCK_N, BLOCK_K // BS, BS // 2]) * scale[:, :, None], [BLOCK_N, BLOCK_K // 2])
        base = tl.interleave(hi, lo)
    k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    rr = tl.arange(0, R)
    b_tile = tl.load(B + n[:, None] * stride_bn + rr[None, :] * stride_br, mask=row[:, None] & (rr[None, :] < r),
                     other=0.0)
    a_tile = tl.load(A + rr[:, None] * stride_an + k[None, :] * stride_ak, mask=(rr[:, None] < r) & (k[None, :] < K),
                     other=0.0)
    if ACC:
        out = scaling * tl.dot(b_tile, a_tile, acc=base * (1.0 / scaling))
    else:
        out = base + scaling * tl.dot(b_tile, a_tile)
    tl.store(OUT + n[:, None].to(tl.int64) * stride_on + k[None, :], out.to(OUT.dtype.element_ty),
             mask=row[:, None] & (k[None, :] < K))


def graphed_us(fn) -> float:
    """Microseconds a call takes: REPLAYS calls captured in one CUDA graph, the median of 10 replays."""
    fn()
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        fn()
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
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__)
    for name, (n, k) in SHAPES.items():
        w = bnb.nn.Params4bit((torch.randn(n, k) / k**0.5).to(torch.bfloat16), requires_grad=False, quant_type="nf4",
                              compress_statistics=True, blocksize=64).to("cuda")
        a = torch.randn(16, k, device="cuda", dtype=torch.bfloat16) / 64
        b = torch.randn(n, 16, device="cuda", dtype=torch.bfloat16) / 64
        out = torch.empty(n, k, device="cuda", dtype=torch.bfloat16)
        want = merge.nf4_merge(w, a, b, 2.0).float()
        moved = n * k * 2 + n * k // 2 + n * k // 64
        qs = w.quant_state
        d = _decoded(qs, w.device)
        args = (w.data, d.code, qs.absmax, d.code2, d.absmax2, a, b, out, n, k, d.offset, 2.0,
                a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), 16)
        consts = {"NESTED": d.nested, "BS": int(qs.blocksize), "BS2": d.blocksize2, "R": 16}
        rows = [(graphed_us(lambda: merge.nf4_merge(w, a, b, 2.0, out=out)), "nf4_merge (autotuned)", 0.0),
                (graphed_us(lambda: nf4_dequantize(w, torch.bfloat16, out=out)), "plain word dequantization", None)]
        for bn, bk, warps in TILES:
            for words in (False, True):
                for acc in (False, True):
                    def call(bn=bn, bk=bk, warps=warps, words=words, acc=acc):
                        _merge_variant[(triton.cdiv(n, bn), triton.cdiv(k, bk))](
                            *args, **consts, BLOCK_N=bn, BLOCK_K=bk, WORDS=words, ACC=acc, num_warps=warps)
                    try:
                        us = graphed_us(call)
                        call()
                        err = (out.float() - want).abs().max().item()
                    except Exception as exc:  # a tile this Triton cannot build: say so, go on
                        print(f"  {bn}x{bk} w{warps} words={words} acc={acc}: failed: {str(exc)[:160]}")
                        continue
                    rows.append((us, f"{bn}x{bk} warps {warps} words={int(words)} acc={int(acc)}", err))
        print(f"{name} {n}x{k}: {moved / 1e6:.1f} MB a merge")
        for us, label, err in sorted(rows)[:14]:
            gap = "" if err is None else f"  max diff {err:.2e}"
            print(f"  {us:8.1f} us  {moved / us / 1e3:7.0f} GB/s  {label}{gap}")


if __name__ == "__main__":
    main()
