"""`tuitune data inspect PATH`: what the trainer would see in a dataset, and what is wrong with it."""

from __future__ import annotations

import argparse
import sys

EXIT_OK = 0
EXIT_UNUSABLE = 1
PROBLEMS_PER_KIND = 20


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="inspect training data",
                                 description="Check a dataset before training on it.")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data_sub.required = True
    inspect = data_sub.add_parser(
        "inspect", help="format, row count, token lengths and problems of a dataset",
        description="Detect the format of PATH (a JSON, JSONL, CSV or Parquet file, a `datasets` "
                    "save_to_disk folder, or a hub name when online), count its rows, measure "
                    "token lengths with the model's tokenizer and list every problem by row. "
                    "Exits 1 when no usable row remains.")
    inspect.add_argument("path", metavar="PATH")
    inspect.add_argument("--format", metavar="F", default=None,
                         help="alpaca, sharegpt, messages, text or preference (default: detect)")
    inspect.add_argument("--model", metavar="M", default=None,
                         help="model whose tokenizer and chat template to use (default: the "
                              "embedded SmolLM2-135M-Instruct)")
    inspect.add_argument("--max-seq-length", metavar="N", type=int, default=None,
                         help="report rows longer than N tokens (default: the model's context)")
    inspect.add_argument("--system-prompt", metavar="TEXT", default=None,
                         help="system prompt added to conversations that have none")
    inspect.add_argument("--all-problems", action="store_true",
                         help="list every problem instead of the first 20 of each kind")
    inspect.add_argument("--map", metavar="NAME=COLUMN,...", default=None,
                         help="read columns under other names, e.g. instruction=question,"
                              "output=answer (as data.columns in a config)")
    inspect.add_argument("--salvage", action="store_true",
                         help="use the complete records of a JSON file that breaks off part-way")
    inspect.set_defaults(func=run_inspect)


def _progress_printer(stream):
    if not stream.isatty():
        return None
    state = {"last": -1}

    def progress(done: int, total: int) -> None:
        percent = int(100 * done / total) if total else 100
        if percent != state["last"]:
            state["last"] = percent
            stream.write(f"\rreading {percent:3d}%")
            if percent >= 100:
                stream.write("\r" + " " * 14 + "\r")
            stream.flush()

    return progress


def report_lines(report, *, per_kind: int | None = PROBLEMS_PER_KIND) -> list[str]:
    from tuitune.data.formats import FORMATS
    from tuitune.data.problems import format_problems

    spec = FORMATS[report.format]
    lines = [
        f"path:     {report.path}",
        f"format:   {report.format} ({spec.title}) — {report.format_reason}",
        f"rows:     {report.row_count:,} ({report.usable_rows:,} usable, "
        f"{report.row_count - report.usable_rows:,} dropped)",
    ]
    if report.lengths:
        lines.append(f"tokens:   mean {report.mean_tokens:,.1f}  median {report.median_tokens:,.1f}  "
                     f"p95 {report.p95_tokens:,}  p99 {report.p99_tokens:,}  "
                     f"max {report.max_tokens:,}")
        how = "p99 rounded up to a multiple of 64"
        if report.model_context:
            capped = report.recommended_max_seq_length == report.model_context
            how += (f", capped by the model's context {report.model_context:,}" if capped
                    else f"; model context {report.model_context:,}")
        lines.append(f"recommended max sequence length: {report.recommended_max_seq_length:,} ({how})")
    else:
        lines.append("tokens:   no usable rows to measure")
    for note in report.notes:
        lines.append(f"note:     {note}")
    if report.format == "preference":
        lines.append("note:     preference pairs train with DPO (training.objective auto or dpo) or ORPO "
                     "(training.objective orpo).")
    if report.problems:
        lines.append(f"problems: {len(report.problems):,}")
        limit = per_kind if per_kind is not None else len(report.problems)
        lines.extend("  " + line for line in format_problems(report.problems, per_kind=limit))
    else:
        lines.append("problems: none")
    if report.samples:
        lines.append("")
        lines.append("first example as the model will see it:")
        lines.extend("  | " + line for line in report.samples[0].splitlines())
    return lines


def run_inspect(args: argparse.Namespace) -> int:
    from tuitune.data.columns import parse_mapping
    from tuitune.data.inspection import inspect_data

    report = inspect_data(args.path, format=args.format, model=args.model,
                          max_seq_length=args.max_seq_length, system_prompt=args.system_prompt,
                          progress=_progress_printer(sys.stderr),
                          columns=parse_mapping(args.map, "--map") if args.map else None,
                          salvage=args.salvage)
    per_kind = None if args.all_problems else PROBLEMS_PER_KIND
    print("\n".join(report_lines(report, per_kind=per_kind)))
    if not report.usable:
        print(f"error: no usable rows in {report.path}: every row has a problem listed above.",
              file=sys.stderr)
        return EXIT_UNUSABLE
    return EXIT_OK
