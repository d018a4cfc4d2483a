"""The real trainer (TRL SFT through `start_training`) with and without tuitune's kernels, same seed.

    python -m tuitune.bench.trainer_compare --shape llama-1b --tokenizer DIR --steps 40 --out OUT

Builds the shape's random-weight checkpoint (cached), gives it the tokenizer from DIR (token ids
must fit the shape's vocabulary), trains both ways on the bundled sample and reports the per-step
loss difference, tokens/s and peak GPU memory of each run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from tuitune import events as ev
from tuitune.config import Config, apply_overrides
from tuitune.runs import RunDir
from tuitune.trainer.launcher import start_training, wait_for

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def prepare_model(shape_name: str, tokenizer_dir: Path) -> Path:
    from tuitune.bench.shapes import build_checkpoint, get_shape

    if Path(shape_name).is_dir():  # an existing model folder instead of a named shape
        return Path(shape_name)
    folder = build_checkpoint(get_shape(shape_name))
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, folder / name)
    return folder


def train_once(model_dir: Path, out: Path, *, kernels: bool, steps: int, method: str, batch: int,
               seq: int, timeout: float) -> dict:
    config = apply_overrides(Config(), {
        "model.name": str(model_dir), "model.method": method, "model.max_seq_length": seq,
        "training.max_steps": steps, "training.batch_size": batch, "training.gradient_accumulation_steps": 1,
        "training.use_kernels": kernels, "training.warmup_steps": 2, "output.dir": str(out),
        "output.name": f"{'kernels' if kernels else 'stock'}",
    })
    handle = start_training(config)
    seen = wait_for(handle, lambda e: e["type"] in ev.TERMINAL, timeout=timeout)
    handle.join(timeout=60)
    events = RunDir(handle.run_dir.path).events()
    final = next((e for e in reversed(events) if e["type"] in ev.TERMINAL), None)
    if final is None or final["type"] != ev.FINISHED:
        raise SystemExit(f"run failed: {final or seen[-1:]}\n{handle.run_dir.log_path.read_text()[-3000:]}")
    steps_ = [e for e in events if e["type"] == ev.STEP]
    started = next(e for e in events if e["type"] == ev.STARTED)
    timed = [e["tokens_per_s"] for e in steps_[2:] if e.get("tokens_per_s")]
    return {
        "kernels": started.get("kernels"), "losses": [e["loss"] for e in steps_],
        "tokens_per_s": sum(timed) / len(timed) if timed else None,
        "peak_gpu_memory_gb": final["summary"].get("peak_gpu_memory_gb"),
        "runtime_s": final["summary"].get("runtime_s"), "device": started.get("device"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuitune.bench.trainer_compare")
    parser.add_argument("--shape", default="llama-1b")
    parser.add_argument("--tokenizer", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--method", default="qlora", choices=["qlora", "lora"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    model_dir = prepare_model(args.shape, args.tokenizer)
    runs = {name: train_once(model_dir, args.out, kernels=name == "tuitune", steps=args.steps,
                             method=args.method, batch=args.batch, seq=args.seq, timeout=args.timeout)
            for name in ("stock", "tuitune")}
    pairs = list(zip(runs["stock"]["losses"], runs["tuitune"]["losses"]))
    diffs = [abs(a - b) for a, b in pairs]
    result = {"shape": args.shape, "method": args.method, "steps": args.steps, "batch": args.batch,
              "seq": args.seq, "runs": runs, "max_loss_diff": max(diffs) if diffs else None,
              "mean_loss_diff": sum(diffs) / len(diffs) if diffs else None}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trainer_compare.json").write_text(json.dumps(result, indent=1))
    print(f"{args.shape} {args.method} batch {args.batch} seq {args.seq}, {args.steps} steps of tuitune train")
    for name, run in runs.items():
        print(f"  {name:8s} kernels={run['kernels']!s:60.60s} tokens/s={run['tokens_per_s'] or 0:,.0f} "
              f"peak={run['peak_gpu_memory_gb'] or 0:.2f} GiB first/last loss "
              f"{run['losses'][0]:.4f}/{run['losses'][-1]:.4f}")
    print(f"  per-step |loss difference|: max {result['max_loss_diff']:.5f}, mean {result['mean_loss_diff']:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
