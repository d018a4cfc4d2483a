"""Time each tuitune kernel against the PyTorch operation it replaces (GPU only).

    python tests/kernels/bench.py [--json PATH]

Shapes are those of the `llama-1b` bench model at 4 x 2048 tokens. Each line gives the median
forward and forward+backward time (ms, triton.testing.do_bench) of ours and of PyTorch.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import torch
import torch.nn.functional as F


def _bench(fn, grads=None):
    from triton.testing import do_bench

    fwd = do_bench(lambda: fn(), warmup=5, rep=40)
    if grads is None:
        return fwd, None

    def step():
        out = fn()
        out.backward(grads(out))
    return fwd, do_bench(step, warmup=5, rep=40, grad_to_none=None)


def _rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    args = parser.parse_args()
    from tuitune.kernels import (LoRAWeights, cross_entropy, fused_linear_cross_entropy, geglu, lora_mlp,
                                 nf4_dequantize, rms_norm, rope, swiglu)

    dev, bf = "cuda", torch.bfloat16
    torch.manual_seed(0)
    T, H, I, V = 8192, 2048, 8192, 128256
    rows = []

    def add(name, ours, theirs, grads=None):
        of, ob = _bench(ours, grads)
        tf, tb = _bench(theirs, grads)
        rows.append({"op": name, "ours_fwd_ms": of, "torch_fwd_ms": tf, "ours_fwd_bwd_ms": ob, "torch_fwd_bwd_ms": tb})
        print(f"{name:28s} fwd {of:8.3f} vs {tf:8.3f} ms" + (f" | fwd+bwd {ob:8.3f} vs {tb:8.3f} ms" if ob else ""),
              flush=True)

    ones = lambda out: torch.ones_like(out)  # noqa: E731
    x = torch.randn(T, H, device=dev, dtype=bf, requires_grad=True)
    w = torch.ones(H, device=dev, dtype=bf, requires_grad=True)

    def torch_rms():
        xf = x.float()
        return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(bf)
    add("rms_norm 8192x2048", lambda: rms_norm(x, w, 1e-5), torch_rms, ones)

    g = torch.randn(T, I, device=dev, dtype=bf, requires_grad=True)
    u = torch.randn(T, I, device=dev, dtype=bf, requires_grad=True)
    add("swiglu 8192x8192", lambda: swiglu(g, u), lambda: F.silu(g) * u, ones)
    add("geglu_tanh 8192x8192", lambda: geglu(g, u, "tanh"), lambda: F.gelu(g, approximate="tanh") * u, ones)

    q = torch.randn(4, 2048, 32, 64, device=dev, dtype=bf).transpose(1, 2).requires_grad_()
    k = torch.randn(4, 2048, 8, 64, device=dev, dtype=bf).transpose(1, 2).requires_grad_()
    pos = torch.arange(2048, device=dev).float()
    inv = 1.0 / (500000 ** (torch.arange(0, 64, 2, device=dev).float() / 64))
    emb = torch.cat([pos[:, None] * inv] * 2, -1)
    cos, sin = emb.cos()[None].to(bf).expand(4, -1, -1), emb.sin()[None].to(bf).expand(4, -1, -1)

    def torch_rope():
        c, s = cos[:, None], sin[:, None]
        return torch.cat([(q * c + _rotate_half(q) * s).flatten(), (k * c + _rotate_half(k) * s).flatten()])

    def our_rope():
        a, b = rope(q, k, cos, sin)
        return torch.cat([a.flatten(), b.flatten()])
    add("rope q32/k8 4x2048x64", our_rope, torch_rope, ones)

    logits = torch.randn(4096, V, device=dev, dtype=bf, requires_grad=True)
    labels = torch.randint(0, V, (4096,), device=dev)
    add("cross_entropy 4096x128256", lambda: cross_entropy(logits, labels),
        lambda: F.cross_entropy(logits.float(), labels), ones)

    hid = torch.randn(T, H, device=dev, dtype=bf, requires_grad=True)
    head = (torch.randn(V, H, device=dev) * 0.02).to(bf)
    lab = torch.randint(0, V, (T,), device=dev)
    add("fused_linear_ce 8192x2048x128256", lambda: fused_linear_cross_entropy(hid, head, lab),
        lambda: F.cross_entropy((hid @ head.t()).float(), lab), ones)
    mem = {}
    for name, fn in (("ours", lambda: fused_linear_cross_entropy(hid, head, lab)),
                     ("torch", lambda: F.cross_entropy((hid @ head.t()).float(), lab))):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn().backward()
        torch.cuda.synchronize()
        mem[name] = (torch.cuda.max_memory_allocated() - base) / 2**30
    rows.append({"op": "fused_linear_ce peak extra GiB", "ours": mem["ours"], "torch": mem["torch"]})
    print(f"fused_linear_ce peak extra memory: ours {mem['ours']:.2f} GiB vs torch {mem['torch']:.2f} GiB")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes as bnb
    wq = bnb.nn.Params4bit((torch.randn(I, H) * 0.02).to(bf), requires_grad=False, quant_type="nf4",
                           compress_statistics=True).to(dev)
    add("nf4_dequantize 8192x2048", lambda: nf4_dequantize(wq),
        lambda: bnb.functional.dequantize_4bit(wq.data, wq.quant_state))

    def lw(out_f, in_f):
        base = bnb.nn.Params4bit((torch.randn(out_f, in_f) * 0.02).to(bf), requires_grad=False, quant_type="nf4",
                                 compress_statistics=True).to(dev)
        a = (torch.randn(16, in_f, device=dev) * 0.01).requires_grad_()
        b = (torch.randn(out_f, 16, device=dev) * 0.01).requires_grad_()
        return LoRAWeights(base, None, a, b, 1.0)
    gp, up, dp = lw(I, H), lw(I, H), lw(H, I)
    xm = torch.randn(T, H, device=dev, dtype=bf, requires_grad=True)

    def stock_proj(x_, p):
        y = bnb.matmul_4bit(x_, p.weight.t(), quant_state=p.weight.quant_state)
        return y + ((x_.float() @ p.lora_a.t()) @ p.lora_b.t()).to(y.dtype)

    add("lora_mlp nf4 8192x2048x8192 r16", lambda: lora_mlp(xm, gp, up, dp),
        lambda: stock_proj(F.silu(stock_proj(xm, gp)) * stock_proj(xm, up), dp), ones)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
