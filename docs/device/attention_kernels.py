"""Which attention kernels run, and how long they take, at llama-8b's shape (batch 2 x 2048, 32 query
heads, 8 key-value heads, head dim 128, bf16, causal): forward alone and forward + backward.

    python3 docs/device/attention_kernels.py

Variants: SDPA with enable_gqa (what transformers' sdpa path passes without a mask), SDPA with k and v
repeated to 32 heads, PyTorch's flash operator called directly (tuitune's kept attention), and the
cuDNN operator called directly. For each: ms per call (CUDA events, 20 calls) and the GPU kernels the
profiler saw, by time.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also under python3 -P
from cuda_timing import ms_per_call  # noqa: E402

B, S, HQ, HK, D = 2, 2048, 32, 8, 128
SCALE = D ** -0.5


def _inputs(kv_heads: int):
    q = torch.randn(B, HQ, S, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(B, kv_heads, S, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in "kv")
    return q, k, v


def sdpa_gqa(backward: bool):
    q, k, v = _inputs(HK)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=SCALE, enable_gqa=True)
    if backward:
        out.backward(torch.ones_like(out))


def sdpa_repeated(backward: bool):
    q, k, v = _inputs(HK)
    k2, v2 = k.repeat_interleave(HQ // HK, 1), v.repeat_interleave(HQ // HK, 1)
    out = F.scaled_dot_product_attention(q, k2, v2, is_causal=True, scale=SCALE)
    if backward:
        out.backward(torch.ones_like(out))


def flash_direct(backward: bool):
    q, k, v = (t.detach() for t in _inputs(HK))
    out, lse, cq, ck, _, _, seed, offset, _ = torch.ops.aten._scaled_dot_product_flash_attention(
        q, k, v, 0.0, True, False, scale=SCALE)
    if backward:
        torch.ops.aten._scaled_dot_product_flash_attention_backward(
            torch.ones_like(out), q, k, v, out, lse, cq, ck, S, S, 0.0, True, seed, offset, scale=SCALE)


def cudnn_direct(backward: bool):
    q, k, v = (t.detach() for t in _inputs(HQ))  # cuDNN's operator is called with as many heads as q
    out, lse, cq, ck, mq, mk, seed, offset, _ = torch.ops.aten._scaled_dot_product_cudnn_attention(
        q, k, v, None, True, 0.0, True, False, scale=SCALE)
    if backward:
        bias = torch.empty(0, device="cuda", dtype=q.dtype)  # no bias (the schema's Tensor is not optional)
        torch.ops.aten._scaled_dot_product_cudnn_attention_backward(
            torch.ones_like(out), q, k, v, out, lse, seed, offset, bias, cq, ck, mq, mk, 0.0, True, scale=SCALE)


def _ms(fn, backward: bool) -> float:
    return ms_per_call(lambda: fn(backward), reps=20)


def main() -> None:
    print(torch.__version__, torch.cuda.get_device_name(), "flash", torch.backends.cuda.flash_sdp_enabled(),
          "cudnn", torch.backends.cuda.cudnn_sdp_enabled(), "efficient", torch.backends.cuda.mem_efficient_sdp_enabled())
    for fn in (sdpa_gqa, sdpa_repeated, flash_direct, cudnn_direct):
        try:
            fwd, both = _ms(fn, False), _ms(fn, True)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                fn(True)
                torch.cuda.synchronize()
            kernels = sorted(((e.device_time_total, e.key) for e in prof.key_averages() if e.device_time_total > 0),
                             reverse=True)[:4]
            print(f"{fn.__name__:14} forward {fwd:.3f} ms, forward + backward {both:.3f} ms")
            for t, name in kernels:
                print(f"    {t / 1000:8.3f} ms  {name[:110]}")
        except Exception as e:  # an operator this torch lacks or refuses: say so and go on
            print(f"{fn.__name__:14} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")


if __name__ == "__main__":
    main()
