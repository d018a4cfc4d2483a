"""`tuitune models`: the catalog and local models, with what fits in the GPU's free memory."""

from __future__ import annotations

import argparse

from tuitune.catalog import ModelSpec, all_models
from tuitune.fit import METHODS, FitRow, fit_row
from tuitune.hardware import best_free_gb, default_source
from tuitune.cli.arguments import positive_int

ASSUMED_FREE_GB = 24.0
METHOD_LABELS = {"qlora": "QLoRA", "lora": "LoRA", "full": "full"}
STATUS_SHORT = {"fits": "fits", "tight": "tight", "does not fit": "no", "unknown": "?"}


def _gib(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected GiB as a number, got {text!r}") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"must be a positive number of GiB, got {text}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the model catalog with the fit of QLoRA, LoRA and full",
                              description="List the catalog and local models (Hugging Face cache, tuitune's "
                                          "cache, --local folders) with parameters, context and, for the free "
                                          "GPU memory, whether QLoRA, LoRA and full fine-tuning fit and the "
                                          "largest batch x sequence length that fits.")
    p.add_argument("--vram", type=_gib, metavar="GIB", help="free GPU memory to plan for (default: detected)")
    p.add_argument("--seq", type=positive_int, default=2048, help="sequence length (default 2048)")
    p.add_argument("--batch", type=positive_int, default=2, help="batch size (default 2)")
    p.add_argument("--rank", type=positive_int, default=16, help="LoRA rank (default 16)")
    p.add_argument("--checkpointing", choices=["auto", "none", "standard", "offloaded"], default="auto",
                   help="activation checkpointing (default auto: per model and method, the fastest mode "
                        "that fits)")
    p.add_argument("--no-kernels", action="store_true",
                   help="estimate the stock path (full logits) instead of tuitune's fused loss")
    p.add_argument("--local", action="append", default=[], metavar="DIR",
                   help="also list models in this folder (repeatable)")
    p.set_defaults(func=run)


def free_memory(vram: float | None, source=None) -> tuple[float, str]:
    """(GiB to plan for, where that figure comes from)."""
    if vram is not None:
        return vram, f"{vram:g} GiB free (--vram)"
    snapshot = (source or default_source()).snapshot()
    free = best_free_gb(snapshot)
    if free is None:
        why = snapshot.nvml_error or "no GPU visible"
        return ASSUMED_FREE_GB, f"{ASSUMED_FREE_GB:g} GiB free, assumed ({why}; pass --vram to plan for another GPU)"
    gpu = max((g for g in snapshot.gpus if g.memory_free_gb is not None), key=lambda g: g.memory_free_gb)
    return free, f"{free:.1f} GiB free on GPU {gpu.index} ({gpu.name or 'n/a'})"


def _context(tokens: int) -> str:
    if not tokens:
        return "?"
    return f"{tokens // 1024}k" if tokens >= 1024 and tokens % 1024 == 0 else str(tokens)


CELL_WIDTH = 30
AUTO_LABELS = {"none": "[none]", "standard": "[std]", "offloaded": "[off]"}


def _cell(row: FitRow, method: str, auto: bool = False) -> str:
    fit = row[method]
    status = STATUS_SHORT[fit.status]
    if fit.status == "unknown":
        return "? (shape unknown)"
    mode = f" {AUTO_LABELS[fit.checkpointing]}" if auto else ""
    return f"{status:<5} {fit.estimate.total_gb:6.1f}G {fit.largest_label}{mode}"


def table(rows: list[FitRow], auto: bool = False) -> str:
    name_w = max([len("model")] + [len(r.spec.name) for r in rows])
    fam_w = max([len("family")] + [len(r.spec.family) for r in rows])
    header = (f"{'model':<{name_w}}  {'family':<{fam_w}}  {'params':>6}  {'context':>7}  "
              + "  ".join(f"{METHOD_LABELS[m]:<{CELL_WIDTH}}" for m in METHODS)).rstrip()
    lines = [header, "-" * len(header)]
    for row in rows:
        s: ModelSpec = row.spec
        source = "" if s.source == "catalog" else f"  [{s.source}]"
        lines.append((f"{s.name:<{name_w}}  {s.family:<{fam_w}}  {s.params_label:>6}  {_context(s.context):>7}  "
                      + "  ".join(f"{_cell(row, m, auto):<{CELL_WIDTH}}" for m in METHODS)).rstrip() + source)
    return "\n".join(lines)


def run(args: argparse.Namespace, source=None) -> int:
    free, where = free_memory(args.vram, source)
    kernels = "stock loss (full logits)" if args.no_kernels else "tuitune kernels where supported"
    rows = [fit_row(spec, free, batch=args.batch, seq=args.seq, rank=args.rank, checkpointing=args.checkpointing,
                    fused_loss=False if args.no_kernels else None)
            for spec in all_models(args.local)]
    print(f"Fit for {where}; batch {args.batch} x {args.seq} tokens, LoRA rank {args.rank}, "
          f"{args.checkpointing} checkpointing, {kernels}.")
    print("Each method: fits / tight (within 10% of free) / no, the estimated peak GiB at this batch x seq, "
          "and the largest batch x seq that fits" + (" (with offloaded checkpointing); [none]/[std]/[off]: the "
          "checkpointing auto picks at this batch x seq." if args.checkpointing == "auto" else "."))
    print()
    print(table(rows, auto=args.checkpointing == "auto"))
    return 0
