"""Where a tuitune bench step's small kernels come from: one profiled step, GPU time and launches by
operator and the Python frames that called it (torch.profiler's stacks).

    python3 docs/device/kernel_sites.py --shape llama-8b --checkpointing offloaded [--cuda-graphs]

Prints two tables: operators by GPU time (GEMMs, attention and NF4 dequantization left out: they are
the work), then by launches (what a launch-bound step spends its host time on).
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="llama-8b")
    parser.add_argument("--checkpointing", default="offloaded")
    parser.add_argument("--cuda-graphs", action="store_true")
    parser.add_argument("--dequantized", action="store_true")
    parser.add_argument("--rows", type=int, default=30)
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from tuitune.bench.measure import Job, _device, _optimizer, load_model, train_step
    from tuitune.bench.shapes import build_checkpoint, get_shape

    shape = get_shape(args.shape)
    job = Job(checkpoint=str(build_checkpoint(shape)), vocab=shape.vocab, path="tuitune",
              checkpointing=args.checkpointing, cuda_graphs=args.cuda_graphs, dequantized=args.dequantized)
    device = _device(job)
    model, report = load_model(job, device)
    print({k: v for k, v in report.items() if k != "kernels"}, flush=True)
    optimizer, _ = _optimizer(model, device, "tuitune")
    ids = torch.randint(0, shape.vocab, (2, 2048), generator=torch.Generator().manual_seed(0)).to(device)
    model.train()
    for _ in range(4):
        train_step(model, optimizer, ids)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], with_stack=True) as prof:
        train_step(model, optimizer, ids)
        sync()
    work = ("mm", "addmm", "matmul", "bmm", "linear", "scaled_dot_product", "_efficient_attention",
            "_flash_attention", "cudnn_attention", "dequant")
    rows = [e for e in prof.key_averages(group_by_stack_n=6)
            if e.device_type.name == "CPU" and e.self_device_time_total > 0
            and not any(w in e.key for w in work)]
    total = sum(e.self_device_time_total for e in prof.key_averages() if e.device_type.name == "CPU")
    print(f"one step: {total / 1000:.1f} ms of GPU time under CPU operators")

    def show(title, key):
        print(f"\n{title}")
        for e in sorted(rows, key=key, reverse=True)[:args.rows]:
            frames = [f.split("site-packages/")[-1].split(os.sep + "tuitune" + os.sep)[-1] for f in e.stack
                      if "torch/" not in f or "checkpoint" in f][:4]
            print(f"{e.self_device_time_total / 1000:8.2f} ms {e.count:6d}x  {e.key}")
            for f in frames:
                print(f"{'':22}{f}")

    show("by GPU time (not GEMMs, attention or dequantization):", lambda e: e.self_device_time_total)
    show("by calls:", lambda e: e.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
