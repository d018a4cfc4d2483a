"""How near the LoRA GLU kernels run to the plain GLU kernels, at llama-8b's MLP shape (4,096 rows x
14,336, rank 16 on gate, up and down, bf16), for a list of tiles.

    python3 docs/device/glu_speed.py 8,128,4 16,128,8 ...

Times (CUDA events, ms a call): the plain SwiGLU forward and backward (what the activation costs when
the GEMMs add the adapters), and `lora_glu` forward and backward for each tile (rows, columns, warps).
Each tile's outputs are checked against the first tile's. The last line names the fastest tile by
forward + backward: "best R,C,W". A tree whose lora_glu has no TILES is timed at its own tile alone.
"""

from __future__ import annotations

import sys

import torch

ROWS, COLS, R = 4096, 14336, 16


def _ms(fn, reps: int = 30) -> float:
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main() -> None:
    from tuitune.kernels.ops import lora_glu
    from tuitune.kernels.ops.swiglu import swiglu_backward, swiglu_forward

    torch.manual_seed(0)
    bf = dict(device="cuda", dtype=torch.bfloat16)
    g, u, dh = (torch.randn(ROWS, COLS, **bf) for _ in range(3))
    xa_g, xa_u, dyb = (torch.randn(ROWS, R, **bf) for _ in range(3))
    b_g, b_u = (torch.randn(COLS, R, **bf) * 0.3 for _ in range(2))
    a_d = torch.randn(R, COLS, **bf) * 0.3
    gb = ROWS * COLS * 2 / 1e9
    g2, u2, dh2 = g.clone(), u.clone(), dh.clone()

    def restore():
        g2.copy_(g), u2.copy_(u), dh2.copy_(dh)

    copy_ms = _ms(restore)
    fwd = _ms(lambda: swiglu_forward(g, u))
    bwd = _ms(lambda: (restore(), swiglu_backward(dh2, g2, u2, with_h=True))) - copy_ms
    print(f"swiglu           forward {fwd:.3f} ms ({3 * gb / fwd:.0f} GB/s), backward {bwd:.3f} ms "
          f"({6 * gb / bwd:.0f} GB/s)")

    tiles = [tuple(map(int, t.split(","))) for t in sys.argv[1:]] if hasattr(lora_glu, "TILES") else [None]
    reference, best = None, None
    for tile in tiles:
        if tile is not None:
            lora_glu.TILES = tile
        try:
            h = lora_glu.lora_glu_forward(g, u, xa_g, b_g, xa_u, b_u)
            restore()
            grads = lora_glu.lora_glu_backward_in_place(dh2, g2, u2, xa_g, b_g, xa_u, b_u, dyb, a_d)
            out = [h] + [t.clone() for t in grads]
            if reference is None:
                reference = out
            worst = max((a.float() - b.float()).abs().max().item() for a, b in zip(out, reference))
            f = _ms(lambda: lora_glu.lora_glu_forward(g, u, xa_g, b_g, xa_u, b_u))
            b = _ms(lambda: (restore(), lora_glu.lora_glu_backward_in_place(
                dh2, g2, u2, xa_g, b_g, xa_u, b_u, dyb, a_d))) - copy_ms
        except Exception as e:  # a tile the compiler refuses
            print(f"lora_glu {tile}  failed: {type(e).__name__}: {str(e)[:120]}")
            continue
        print(f"lora_glu {str(tile):16} forward {f:.3f} ms ({3 * gb / f:.0f} GB/s), backward {b:.3f} ms "
              f"({6 * gb / b:.0f} GB/s); largest difference from the first tile {worst:.3g}")
        if tile is not None and (best is None or f + b < best[0]):
            best = (f + b, tile)
    if best:
        print("best " + ",".join(map(str, best[1])))


if __name__ == "__main__":
    main()
