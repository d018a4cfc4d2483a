"""`tuitune bench`: the stock path against tuitune's on a random-weight checkpoint of a named shape."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tuitune.bench.shapes import SHAPES
from tuitune.errors import TuituneError
from tuitune.cli.arguments import positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="compare tokens/s and peak GPU memory of the stock path and tuitune's",
        description="Build (once, cached) a random-weight checkpoint of a named shape, then train it on "
                    "random tokens with the stock transformers + PEFT + bitsandbytes path and with tuitune's "
                    "kernels, each in its own process, and print tokens/s, peak GPU memory and the ratios.")
    p.add_argument("--shape", required=True, choices=sorted(SHAPES), help="model shape")
    p.add_argument("--batch", type=positive_int, default=2, help="sequences per step (default 2)")
    p.add_argument("--seq", type=positive_int, default=2048, help="tokens per sequence (default 2048)")
    p.add_argument("--rank", type=positive_int, default=16, help="LoRA rank (default 16)")
    p.add_argument("--steps", type=positive_int, default=10, help="training steps per path (default 10)")
    p.add_argument("--warmup", type=int, default=None, help="leading steps left out of the timing (default 2)")
    p.add_argument("--method", choices=["qlora", "lora"], default="qlora", help="default qlora")
    p.add_argument("--baseline", choices=["hf", "hf-autocast", "both", "none"], default="hf",
                   help="hf runs the stock path too, as a plain training loop (default, the ratios' "
                        "baseline); hf-autocast runs it with each forward under bf16 autocast, as the Hugging "
                        "Face Trainer does with bf16=True (PEFT's float32 adapters then multiply in bf16); "
                        "both runs the two (ratios against hf, and a second row against autocast); none runs "
                        "tuitune's only")
    p.add_argument("--checkpointing", choices=["standard", "offloaded", "none", "auto"], default="standard",
                   help="activation checkpointing on both paths (default standard); auto: the stock path "
                        "recomputes as users run it, tuitune's runs once per mode and its row is the mode "
                        "`training.gradient_checkpointing = \"auto\"` picks for the GPU's free memory")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto", help="default: cuda if present")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="after timing, profile this many more steps of each path on the GPU and print where "
                        "the kernel time goes (GEMMs, dequantization, attention, loss, copies, idle), then as "
                        "many more on the host (own time by library and function); with --trainer, the "
                        "trainer's runs too (training.profile_steps)")
    p.add_argument("--memory-trace", action="store_true",
                   help="after timing, trace one more step of each path on the GPU and print what is alive at "
                        "its memory peak, by the line of code that allocated it")
    p.add_argument("--trainer", action="store_true",
                   help="then run `tuitune train` at the same shape, batch and length with kernels on and off "
                        "(CUDA graphs as --cuda-graphs sets them), and compare its tokens/s with the bench's")
    p.add_argument("--packing", action="store_true",
                   help="then run `tuitune train` (kernels on) on rows of 50 to --seq tokens, packed and "
                        "unpacked, and compare their real (non-padding) tokens/s")
    p.add_argument("--repeat", type=positive_int, default=1, metavar="N",
                   help="run each path N times, alternating, and report the median tokens/s (a launch-bound "
                        "step's speed follows the host's; default 1)")
    p.add_argument("--cuda-graphs", choices=["off", "on", "both"], default="off",
                   help="replay tuitune's layers as CUDA graphs (fewer launches): with recomputation each layer's "
                        "forward and recompute + backward, without it each layer's forward and backward (keeping "
                        "its activations); the graphs' memory pool is counted in the peak; both: run tuitune's "
                        "path without and with them (default off)")
    p.add_argument("--dequantized", action="store_true",
                   help="QLoRA: tuitune's path keeps the 4-bit base weights dequantized (training.dequantize_once = "
                        "on); under --checkpointing auto that policy is tried anyway, as the trainer's auto does")
    p.add_argument("--memory-cap", type=float, default=0.0, metavar="GB",
                   help="cap each measuring process's GPU memory at this many GiB (PyTorch's "
                        "set_per_process_memory_fraction), as a smaller card would: a path that does not fit "
                        "fails with its out-of-memory error (default: no cap)")
    p.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tuitune.bench.runner import format_report, run_bench, speed

    if args.memory_cap < 0:
        raise TuituneError(f"--memory-cap {args.memory_cap:g}: give the cap in GiB, above 0 (or leave it out).")
    if args.json:
        target = Path(args.json).expanduser()
        if target.parent and not target.parent.exists():
            raise TuituneError(f"--json {args.json}: the folder {target.parent} does not exist. "
                               "Create it or pick another path.")
    result = run_bench(args.shape, batch=args.batch, seq=args.seq, rank=args.rank, steps=args.steps,
                       method=args.method, baseline=args.baseline, warmup=args.warmup, device=args.device,
                       checkpointing=args.checkpointing, profile=args.profile, repeat=args.repeat,
                       memory_trace=args.memory_trace, cuda_graphs=args.cuda_graphs, dequantized=args.dequantized,
                       memory_cap_gb=args.memory_cap)
    print(format_report(result))
    # with --cuda-graphs both, the trainer (graphs on) is compared with the graphed bench run
    ours = result["runs"].get("tuitune graphs" if args.cuda_graphs == "both" else "tuitune", {})
    if args.trainer and "error" not in ours:
        import tempfile

        from tuitune.bench.trainer_compare import format_product_path, product_path

        out = Path(tempfile.mkdtemp(prefix="tuitune-bench-train-"))
        result["trainer"] = product_path(
            args.shape, batch=args.batch, seq=args.seq, steps=args.steps, method=args.method,
            checkpointing=args.checkpointing, bench_tokens_per_s=speed(ours),
            out=out, device=args.device, profile_steps=args.profile,
            cuda_graphs="off" if args.cuda_graphs == "off" else "on",
            dequantize_once="on" if args.dequantized else "auto" if args.checkpointing == "auto" else "off")
        print()
        print(format_product_path(result["trainer"]))
    if args.packing and "error" not in ours:
        import tempfile

        from tuitune.bench.trainer_compare import format_packing_path, packing_path

        out = Path(tempfile.mkdtemp(prefix="tuitune-bench-packing-"))
        result["packing"] = packing_path(args.shape, batch=args.batch, seq=args.seq, steps=args.steps,
                                         method=args.method, checkpointing=args.checkpointing, out=out,
                                         device=args.device)
        print()
        print(format_packing_path(result["packing"]))
    if args.json:
        Path(args.json).expanduser().write_text(json.dumps(result, indent=2))
        print(f"\nnumbers written to {args.json}")
    failed = [path for path, r in result["runs"].items() if "error" in r]
    return 1 if failed else 0
