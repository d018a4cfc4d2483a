"""The real trainer on one GPU against the same run spread over several, at the same global batch.

    python -m tuitune.bench.distributed_compare --shape llama-1b --tokenizer DIR --gpus 2 \
        --modes none,ddp,fsdp --method qlora --batch 8 --seq 512 --steps 30 --out OUT

Each mode trains the shape's random-weight checkpoint (cached; token ids from DIR's tokenizer must fit
its vocabulary) on the bundled sample through `launcher.start`, exactly as `tuitune train` does. `none`
runs one GPU at `--batch`; the others run `--gpus` ranks at `--batch / --gpus` each, so every optimizer
step sees the same examples. Reports per mode: tokens/s (all ranks), rank 0's peak GPU memory, the
kernels note, and the largest per-step loss difference from `none`. Writes OUT/distributed.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tuitune import events as ev
from tuitune.config import Config, apply_overrides
from tuitune.quick_exit import freeze_at_exit
from tuitune.runs import RunDir
from tuitune.trainer.launcher import start, wait_for


def run_mode(model_dir: Path, out: Path, mode: str, gpus: int, args) -> dict:
    ranks = 1 if mode == "none" else gpus
    if args.batch % ranks:
        raise SystemExit(f"--batch {args.batch} does not split over {ranks} GPUs")
    overrides = {"model.name": str(model_dir), "model.method": args.method, "model.max_seq_length": args.seq,
                 "training.max_steps": args.steps, "training.batch_size": args.batch // ranks,
                 "training.gradient_accumulation_steps": 1, "training.warmup_steps": 2,
                 "training.optimizer": "adamw_torch", "training.distributed": mode, "training.gpus": str(ranks),
                 "output.dir": str(out), "output.name": mode, "training.objective": "sft"}
    handle = start(apply_overrides(Config(), overrides))
    wait_for(handle, lambda e: e["type"] in ev.TERMINAL, timeout=args.timeout)
    handle.join(timeout=120)
    events = RunDir(handle.run_dir.path).events()
    final = next((e for e in reversed(events) if e["type"] in ev.TERMINAL), None)
    if final is None or final["type"] != ev.FINISHED:
        return {"mode": mode, "failed": final, "log_tail": handle.run_dir.log_path.read_text()[-3000:]}
    steps = [e for e in events if e["type"] == ev.STEP]
    started = next(e for e in events if e["type"] == ev.STARTED)
    timed = [e["tokens_per_s"] for e in steps[2:] if e.get("tokens_per_s")]
    return {"mode": mode, "gpus": ranks, "kernels": started.get("kernels"), "losses": [e["loss"] for e in steps],
            "tokens_per_s": sum(timed) / len(timed) if timed else None,
            "peak_gpu_memory_gb_rank0": final["summary"].get("peak_gpu_memory_gb"),
            "runtime_s": final["summary"].get("runtime_s")}


def main(argv: list[str] | None = None) -> int:
    from tuitune.bench.trainer_compare import prepare_model

    parser = argparse.ArgumentParser(prog="python -m tuitune.bench.distributed_compare")
    parser.add_argument("--shape", default="llama-1b")
    parser.add_argument("--tokenizer", required=True, type=Path)
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--modes", default="none,ddp,fsdp")
    parser.add_argument("--method", default="qlora", choices=["qlora", "lora"])
    parser.add_argument("--batch", type=int, default=8, help="global batch (examples per optimizer step)")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    model_dir = prepare_model(args.shape, args.tokenizer)
    results = [run_mode(model_dir, args.out, mode.strip(), args.gpus, args) for mode in args.modes.split(",")]
    base = next((r for r in results if r["mode"] == "none" and "losses" in r), None)
    for result in results:
        if base is not None and "losses" in result:
            pairs = list(zip(base["losses"], result["losses"]))
            result["max_loss_diff_vs_none"] = max((abs(a - b) for a, b in pairs if a is not None and b is not None),
                                                  default=None)
        print(json.dumps({k: v for k, v in result.items() if k not in ("losses", "log_tail")}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distributed.json").write_text(json.dumps(results, indent=1))
    return 0 if all("losses" in r for r in results) else 1


if __name__ == "__main__":
    freeze_at_exit()
    sys.exit(main())
