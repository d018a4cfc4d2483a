"""The real trainer (TRL SFT through `launcher.start`) with and without tuitune's kernels, same seed.

    python -m tuitune.bench.trainer_compare --shape llama-1b --tokenizer DIR --steps 40 --out OUT
    python -m tuitune.bench.trainer_compare --shape llama-1b --objective dpo --out OUT   # no tokenizer needed

Builds the shape's random-weight checkpoint (cached), gives it the tokenizer from DIR (token ids
must fit the shape's vocabulary), trains both ways on the bundled sample and reports the per-step
loss difference, tokens/s and peak GPU memory of each run.

`tuitune bench --trainer` uses `product_path`: the same trainer on synthetic plain text whose rows
fill every sequence (a byte-level BPE tokenizer trained on that text, so no download), at the bench's
batch, length and checkpointing, with kernels on and off, against the bench's own tokens/s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from tuitune import events as ev
from tuitune.bench.measure import device_type
from tuitune.config import Config, apply_overrides
from tuitune.quick_exit import freeze_at_exit
from tuitune.trainer.launcher import start, wait_for
from tuitune.trainer.profile_callback import PROFILE_FILE, steps_profiled
from tuitune.trainer.step_profile import format_profile

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


def _words(rng) -> list[str]:
    """3,000 random lowercase words of 2 to 9 letters: the synthetic corpora's vocabulary."""
    return ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
            for _ in range(3000)]


def synthetic_text(path: Path, *, rows: int, words_per_row: int, seed: int = 0) -> Path:
    """JSONL plain text of random lowercase words: rows long enough to fill any bench sequence."""
    import random

    rng = random.Random(seed)
    vocabulary = _words(rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for _ in range(rows):
            out.write(json.dumps({"text": " ".join(rng.choices(vocabulary, k=words_per_row))}) + "\n")
    return path


def synthetic_pairs(path: Path, *, rows: int, words: int, seed: int = 0) -> Path:
    """JSONL preference pairs of random words (prompt, chosen, rejected), about `words` words in all per
    side, for `--objective dpo|orpo`: the chosen reply always repeats the prompt's first word."""
    import random

    rng = random.Random(seed)
    vocabulary = _words(rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for _ in range(rows):
            prompt = rng.choices(vocabulary, k=max(words // 3, 1))
            reply = max(words - len(prompt), 2)
            out.write(json.dumps({"prompt": " ".join(prompt),
                                  "chosen": " ".join([prompt[0]] * 3 + rng.choices(vocabulary, k=reply - 3)),
                                  "rejected": " ".join(rng.choices(vocabulary, k=reply))}) + "\n")
    return path


def train_tokenizer(corpus: Path, folder: Path, vocab: int) -> None:
    """A byte-level BPE tokenizer learnt from `corpus`, saved into the model `folder` (ids < vocab)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>"]  # ids 0, 1, 2: the bench shapes' pad, bos and eos
    trainer = trainers.BpeTrainer(vocab_size=min(vocab, 8192), special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = (json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines())
    tokenizer.train_from_iterator(texts, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(str(folder))


def checkpoint_with_tokenizer(shape_name: str, corpus: Path) -> Path:
    """The shape's random-weight checkpoint (cached) with a BPE tokenizer learnt from `corpus`: no
    download needed."""
    from tuitune.bench.shapes import build_checkpoint, get_shape

    shape = get_shape(shape_name)
    folder = build_checkpoint(shape)
    train_tokenizer(corpus, folder, shape.vocab)
    return folder


def train_once(model_dir: Path, out: Path, *, kernels: bool, steps: int, method: str, batch: int,
               seq: int, timeout: float, checkpointing: str = "auto", data: Path | None = None,
               device: str = "auto", objective: str = "auto", packing: bool = False,
               name: str | None = None, profile_steps: int = 0, cuda_graphs: str = "auto",
               dequantize_once: str = "auto") -> dict:
    overrides = {
        "training.objective": objective,
        "model.name": str(model_dir), "model.method": method, "model.max_seq_length": seq,
        "training.max_steps": steps, "training.batch_size": batch, "training.gradient_accumulation_steps": 1,
        "training.use_kernels": kernels, "training.warmup_steps": 2, "output.dir": str(out),
        "output.name": name or f"{'kernels' if kernels else 'stock'}", "training.logging_steps": 1,
        "data.packing": packing,
        "training.gradient_checkpointing": checkpointing, "training.device": device,
        "training.profile_steps": profile_steps, "training.cuda_graphs": cuda_graphs,
        "training.dequantize_once": dequantize_once,
    }
    if data is not None:
        overrides["data.path"] = str(data)
    config = apply_overrides(Config(), overrides)
    handle = start(config)
    seen = wait_for(handle, lambda e: e["type"] in ev.TERMINAL, timeout=timeout)
    handle.join(timeout=60)
    events = handle.run_dir.events()
    final = next((e for e in reversed(events) if e["type"] in ev.TERMINAL), None)
    if final is None or final["type"] != ev.FINISHED:
        raise SystemExit(f"run failed: {final or seen[-1:]}\n{handle.run_dir.log_path.read_text()[-3000:]}")
    steps_ = [e for e in events if e["type"] == ev.STEP]
    started = next(e for e in events if e["type"] == ev.STARTED)
    profile_file = handle.run_dir.path / PROFILE_FILE
    profile = json.loads(profile_file.read_text()) if profile_file.exists() else None
    timed = timed_rates(steps_, profile)
    return {
        "tokens_seen": steps_[-1].get("tokens_seen") if steps_ else None,
        "reward_margins": [e["reward_margin"] for e in steps_ if e.get("reward_margin") is not None],
        "kernels": started.get("kernels"), "losses": [e["loss"] for e in steps_],
        "tokens_per_s": sum(timed) / len(timed) if timed else None,
        "peak_gpu_memory_gb": final["summary"].get("peak_gpu_memory_gb"),
        "peak_gpu_memory_parts": final["summary"].get("peak_gpu_memory_parts"),
        "runtime_s": final["summary"].get("runtime_s"), "device": started.get("device"),
        "cuda_graphs": _graph_lines(events),
        "batch_facts": said_batch_facts(events),
        "profile": profile,
    }


def timed_rates(step_events: list[dict], profile: dict | None) -> list[float]:
    """The tokens/s of the steps that count: not the first two (warm-up), not the profiled ones (slower
    under the profiler), and not the step before those: the profiler starts in that step's
    ``on_step_end``, before its log's clock is read, so its window holds the profiler's start."""
    profiled = range(profile["first_step"] - 1, profile["last_step"] + 1) if profile else range(0)
    return [e["tokens_per_s"] for e in step_events[2:] if e.get("tokens_per_s") and e["step"] not in profiled]


def said_batch_facts(events: list[dict]) -> bool:
    """Whether the run said its batches carried their facts (batch_facts.add_batch_facts)."""
    return any(e["type"] == ev.LOG and e.get("text", "").startswith("Batch facts:") for e in events)


def _graph_lines(events: list[dict]) -> list[str]:
    """What the run said about its layers' CUDA graphs (chosen or not; captured, or why they stopped)."""
    return [e.get("text", "") for e in events
            if e["type"] in (ev.LOG, ev.WARNING) and "CUDA graphs" in e.get("text", "")]


def product_path(shape_name: str, *, batch: int, seq: int, steps: int, method: str, checkpointing: str,
                 bench_tokens_per_s: float | None, out: Path, device: str = "auto",
                 timeout: float = 900, profile_steps: int = 0, cuda_graphs: str = "auto",
                 dequantize_once: str = "auto") -> dict:
    """`tuitune train` at the bench's shape with kernels on and off; tokens/s against the bench's.
    ``cuda_graphs`` and ``dequantize_once`` are the trainer's `training.cuda_graphs` and
    `training.dequantize_once`: the bench's own settings, like for like."""
    profiled = steps_profiled(profile_steps, device_type(device))
    corpus = synthetic_text(out / "text.jsonl", rows=batch * (steps + profiled + 2), words_per_row=seq)
    folder = checkpoint_with_tokenizer(shape_name, corpus)
    # objective sft: the bench's step (LoRA on the projections, every token trained); auto would pick
    # continued pretraining for plain text, which also packs and trains the embeddings.
    # profiled steps do not count for tokens/s, so the runs are that much longer
    runs = {name: train_once(folder, out, kernels=name == "kernels", steps=steps + profiled, method=method,
                             batch=batch, seq=seq, timeout=timeout, checkpointing=checkpointing, data=corpus,
                             device=device, objective="sft", profile_steps=profile_steps, cuda_graphs=cuda_graphs,
                             dequantize_once=dequantize_once)
            for name in ("kernels", "stock")}
    ours, stock = runs["kernels"]["tokens_per_s"], runs["stock"]["tokens_per_s"]
    return {"runs": runs, "checkpointing": checkpointing, "cuda_graphs": cuda_graphs,
            "trainer_vs_bench": ours / bench_tokens_per_s if ours and bench_tokens_per_s else None,
            "kernels_vs_stock": ours / stock if ours and stock else None}


def varied_text(path: Path, *, rows: int, shortest: int, longest: int, seed: int = 0) -> Path:
    """JSONL plain text whose rows have log-uniformly distributed lengths in words, from `shortest` to
    `longest`: many short rows and a few long ones, like instruction and chat data."""
    import math
    import random

    rng = random.Random(seed)
    vocabulary = _words(rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for _ in range(rows):
            words = round(math.exp(rng.uniform(math.log(shortest), math.log(longest))))
            out.write(json.dumps({"text": " ".join(rng.choices(vocabulary, k=words))}) + "\n")
    return path


def packing_path(shape_name: str, *, batch: int, seq: int, steps: int, method: str, checkpointing: str,
                 out: Path, device: str = "auto", shortest: int = 50, longest: int = 2000,
                 timeout: float = 900) -> dict:
    """`tuitune train` (kernels on) on rows of `shortest` to `longest` tokens, packed and unpacked, at the
    same batch size and length; tokens/s counts real tokens only (TRL's non-padding token count)."""
    from transformers import AutoTokenizer

    corpus = varied_text(out / "varied.jsonl", rows=max(batch * seq * (steps + 4) // 250, 200),
                         shortest=shortest, longest=min(longest, seq))
    folder = checkpoint_with_tokenizer(shape_name, corpus)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    lengths = sorted(len(tokenizer(json.loads(line)["text"])["input_ids"])
                     for line in corpus.read_text(encoding="utf-8").splitlines())
    runs = {name: train_once(folder, out, kernels=True, steps=steps, method=method, batch=batch, seq=seq,
                             timeout=timeout, checkpointing=checkpointing, data=corpus, device=device,
                             packing=name == "packed", name=name, objective="sft")
            for name in ("packed", "unpacked")}
    packed, unpacked = runs["packed"]["tokens_per_s"], runs["unpacked"]["tokens_per_s"]
    return {"runs": runs, "checkpointing": checkpointing, "batch": batch, "seq": seq,
            "row_tokens": {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1],
                           "mean": sum(lengths) / len(lengths), "rows": len(lengths)},
            "packed_vs_unpacked": packed / unpacked if packed and unpacked else None}


def format_packing_path(report: dict) -> str:
    rows = report["row_tokens"]
    lines = [f"tuitune train, kernels on, batch {report['batch']} x {report['seq']}, {report['checkpointing']} "
             f"checkpointing, rows of {rows['min']}-{rows['max']} tokens (median {rows['median']}, "
             f"mean {rows['mean']:.0f}); real tokens/s from its events:"]
    for name, run in report["runs"].items():
        peak = run.get("peak_gpu_memory_gb")
        lines.append(f"  {name:9s}{run['tokens_per_s'] or 0:>12,.0f} tok/s"
                     + (f"{peak:>10.2f} GiB" if peak is not None else ""))
    value = report.get("packed_vs_unpacked")
    lines.append("  packed / unpacked: " + (f"{value:.2f}x" if value is not None else "n/a"))
    return "\n".join(lines)


def peak_parts_line(parts: dict) -> str:
    """A lent pool's peak, as the trainer composed it (run_loop.peak_parts_of_a_lent_pool)."""
    return (f"peak = max(before training {parts['before_training_gb']:.2f}, outside the pool "
            f"{parts['outside_pool_gb']:.2f} + pool {parts['pool_gb']:.2f}) GiB")


def format_product_path(report: dict) -> str:
    runs = report["runs"]
    lines = [f"tuitune train at the same shape ({report['checkpointing']} checkpointing), tokens/s from its events:"]
    for name, run in runs.items():
        peak = run.get("peak_gpu_memory_gb")
        lines.append(f"  {name:8s}{run['tokens_per_s'] or 0:>12,.0f} tok/s"
                     + (f"{peak:>10.2f} GiB" if peak is not None else "") + f"   kernels {run['kernels']}")
        for line in run.get("cuda_graphs") or []:
            lines.append(f"{'':10}{line}")
        if run.get("batch_facts"):
            lines.append(f"{'':10}Batch facts on: nothing read back from the GPU at a step's start.")
        if run.get("peak_gpu_memory_parts"):
            lines.append(f"{'':10}{peak_parts_line(run['peak_gpu_memory_parts'])}")
    for key, label in (("trainer_vs_bench", "train (kernels) / bench (tuitune)"),
                       ("kernels_vs_stock", "train kernels on / off")):
        value = report.get(key)
        lines.append(f"  {label}: " + (f"{value:.2f}x" if value is not None else "n/a"))
    for name, run in runs.items():
        if run.get("profile"):
            lines.append(f"\ntuitune train ({name}) profile: " + format_profile(run["profile"]))
    return "\n".join(lines)


def words_that_fit(tokenizer_dir: Path, seq: int) -> int:
    """Words of the synthetic vocabulary per pair (prompt and reply) that fill about 80% of `seq` tokens."""
    import random

    from transformers import AutoTokenizer

    sample = _words(random.Random(0))[:300]
    tokens = len(AutoTokenizer.from_pretrained(str(tokenizer_dir))(" ".join(sample))["input_ids"])
    return max(int(0.8 * seq * len(sample) / tokens), 6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuitune.bench.trainer_compare")
    parser.add_argument("--shape", default="llama-1b")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="a tokenizer folder whose ids fit the shape's vocabulary; dpo/orpo default to a "
                             "byte-level BPE learnt from the synthetic words (sft needs a chat tokenizer)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--method", default="qlora", choices=["qlora", "lora"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--objective", default="sft", choices=["sft", "dpo", "orpo"],
                        help="sft: the bundled sample; dpo/orpo: synthetic pairs filling --seq")
    args = parser.parse_args(argv)
    if args.tokenizer is None and args.objective == "sft":
        parser.error("--objective sft trains on the bundled chat sample: give --tokenizer (a chat model's "
                     "tokenizer folder, such as the embedded default's)")
    if args.tokenizer:
        model_dir = prepare_model(args.shape, args.tokenizer)
    else:  # a BPE learnt from the synthetic words the pairs are made of
        words = synthetic_text(args.out / "text.jsonl", rows=200, words_per_row=200)
        model_dir = checkpoint_with_tokenizer(args.shape, words)
    data = None
    if args.objective != "sft":
        data = synthetic_pairs(args.out / "pairs.jsonl", rows=args.batch * (args.steps + 2),
                               words=words_that_fit(model_dir, args.seq))
    runs = {name: train_once(model_dir, args.out, kernels=name == "tuitune", steps=args.steps,
                             method=args.method, batch=args.batch, seq=args.seq, timeout=args.timeout,
                             data=data, objective=args.objective)
            for name in ("stock", "tuitune")}
    pairs = list(zip(runs["stock"]["losses"], runs["tuitune"]["losses"]))
    diffs = [abs(a - b) for a, b in pairs]
    result = {"shape": args.shape, "method": args.method, "objective": args.objective, "steps": args.steps,
              "batch": args.batch, "seq": args.seq, "runs": runs, "max_loss_diff": max(diffs) if diffs else None,
              "mean_loss_diff": sum(diffs) / len(diffs) if diffs else None}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trainer_compare.json").write_text(json.dumps(result, indent=1))
    print(f"{args.shape} {args.method} {args.objective} batch {args.batch} seq {args.seq}, {args.steps} steps of "
          "tuitune train")
    for name, run in runs.items():
        print(f"  {name:8s} kernels={run['kernels']!s:60.60s} tokens/s={run['tokens_per_s'] or 0:,.0f} "
              f"peak={run['peak_gpu_memory_gb'] or 0:.2f} GiB first/last loss "
              f"{run['losses'][0]:.4f}/{run['losses'][-1]:.4f}")
        if run.get("peak_gpu_memory_parts"):
            print(f"  {'':8s} {peak_parts_line(run['peak_gpu_memory_parts'])}")
    print(f"  per-step |loss difference|: max {result['max_loss_diff']:.5f}, mean {result['mean_loss_diff']:.5f}")
    return 0


if __name__ == "__main__":
    freeze_at_exit()
    sys.exit(main())
