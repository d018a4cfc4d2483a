"""How near versions of the LoRA GLU kernels run to the plain GLU kernels, at llama-8b's MLP shape
(4,096 rows x 14,336, rank 16 on gate, up and down, bf16), for lists of tiles.

    python3 docs/device/glu_speed.py A.py 8,128,4 16,128,8 B.py C.py 32,128,8 ...

Each file is a version of kernels/ops/lora_glu.py, the LoRA MLP's activation kernel with the adapters'
rank-r terms added inside it, which tuitune had from e7f3c89 (tl.dot) through 9cb9601 (a run-time
loop of multiply-adds, B read with a stride of r) and a40a792 (B.T read coalesced), and dropped after
this script's measurements: ``git show a40a792:kernels/ops/lora_glu.py > /tmp/loop.py``. The tiles
(rows, columns, warps) after a file are tried in turn (none: the file's own tile). Times (CUDA events, ms a call): the plain SwiGLU forward
and backward with the adapters added by cuBLAS (``addmm_`` of the rank-r products into gate and up,
and into the down projection's input gradient: the other way to do it), and each version's forward
and backward. Outputs are checked against the first version's. The last line names the fastest by
forward + backward: "best FILE R,C,W".
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also under python3 -P
from cuda_timing import ms_per_call  # noqa: E402

ROWS, COLS, R = 4096, 14336, 16


def _ms(fn) -> float:
    return ms_per_call(fn, reps=30)


def _module(path: str):
    text = open(path).read().replace("from .", "from tuitune.kernels.ops.")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], f.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _versions(args: list[str]):
    versions = []
    for a in args:
        if a.endswith(".py"):
            versions.append((a, []))
        else:
            versions[-1][1].append(tuple(map(int, a.split(","))))
    return versions


def main() -> None:
    from tuitune.kernels.ops.swiglu import swiglu_backward, swiglu_forward

    torch.manual_seed(0)
    bf = dict(device="cuda", dtype=torch.bfloat16)
    g, u, dh = (torch.randn(ROWS, COLS, **bf) for _ in range(3))
    xa_g, xa_u, dyb = (torch.randn(ROWS, R, **bf) for _ in range(3))
    b_g, b_u = (torch.randn(COLS, R, **bf) * 0.3 for _ in range(2))
    a_d = torch.randn(R, COLS, **bf) * 0.3
    gb = ROWS * COLS * 2 / 1e6  # GB a tensor, per ms: GB/s
    g2, u2, dh2 = g.clone(), u.clone(), dh.clone()

    def restore():
        g2.copy_(g), u2.copy_(u), dh2.copy_(dh)

    copy_ms = _ms(restore)
    fwd = _ms(lambda: swiglu_forward(g, u))
    bwd = _ms(lambda: (restore(), swiglu_backward(dh2, g2, u2, with_h=True))) - copy_ms
    add_f = _ms(lambda: (restore(), g2.addmm_(xa_g, b_g.t()), u2.addmm_(xa_u, b_u.t()))) - copy_ms
    add_b = _ms(lambda: (restore(), dh2.addmm_(dyb, a_d))) - copy_ms
    print(f"swiglu           forward {fwd:.3f} ms ({3 * gb / fwd:.0f} GB/s), backward {bwd:.3f} ms "
          f"({6 * gb / bwd:.0f} GB/s); cuBLAS adds the adapters: +{add_f:.3f} ms forward, +{add_b:.3f} ms backward; "
          f"together {fwd + bwd + add_f + add_b:.3f} ms")

    reference, best = None, None
    for path, tiles in _versions(sys.argv[1:]):
        module = _module(path)
        name = os.path.basename(path)
        for tile in tiles or [None]:
            if tile is not None:
                module._tiles = lambda tile=tile: tile
            try:
                h = module.lora_glu_forward(g, u, xa_g, b_g, xa_u, b_u)
                restore()
                grads = module.lora_glu_backward_in_place(dh2, g2, u2, xa_g, b_g, xa_u, b_u, dyb, a_d)
                out = [h] + [t.clone() for t in grads]
                if reference is None:
                    reference = out
                worst = max((a.float() - b.float()).abs().max().item() for a, b in zip(out, reference))
                f = _ms(lambda: module.lora_glu_forward(g, u, xa_g, b_g, xa_u, b_u))
                b = _ms(lambda: (restore(), module.lora_glu_backward_in_place(
                    dh2, g2, u2, xa_g, b_g, xa_u, b_u, dyb, a_d))) - copy_ms
            except Exception as e:  # a tile the compiler refuses
                print(f"{name} {tile}  failed: {type(e).__name__}: {str(e)[:120]}")
                continue
            print(f"{name:28} {str(tile):15} forward {f:.3f} ms, backward {b:.3f} ms, together {f + b:.3f} ms; "
                  f"largest difference from the first {worst:.3g}")
            if best is None or f + b < best[0]:
                best = (f + b, path, tile)
    if best:
        print(f"best {best[1]} " + (",".join(map(str, best[2])) if best[2] else "-"))


if __name__ == "__main__":
    main()
