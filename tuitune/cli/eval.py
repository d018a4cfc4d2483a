"""`tuitune eval RUN|MODEL [--data FILE] [--tasks NAMES|TASK.yaml]`: base and tuned side by side, saved in the run."""

from __future__ import annotations

import argparse
import json
import sys

from tuitune.cli.arguments import positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="measure a run or model: held-out perplexity, exact match, harness tasks",
        description="Measure a run (its adapter against its base model, side by side), an adapter folder or a "
                    "model: perplexity and exact match of greedy answers on a held-out file (offline), and "
                    "lm-evaluation-harness tasks when lm_eval is installed. A run's results are saved in its "
                    "folder (eval.json) and shown on the Runs screen.")
    parser.add_argument("target", help="a run name or folder, an adapter folder, or a model")
    parser.add_argument("--data", metavar="FILE", help="held-out file in any training format (default: the "
                                                       "run's data.eval_path)")
    parser.add_argument("--tasks", action="append", metavar="NAMES|TASK.yaml",
                        help="lm-evaluation-harness task names (comma-separated) or a local task YAML file")
    parser.add_argument("--limit", type=positive_int, default=100, help="rows (and examples per task) to "
                                                                        "measure (default 100)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--json", metavar="PATH", help="also write the results to this JSON file")
    parser.add_argument("--output", metavar="DIR", help="runs root folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tuitune.evaluation.results import table_lines
    from tuitune.evaluation.runner import evaluate

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    results = evaluate(args.target, data=args.data, tasks=args.tasks, limit=args.limit, device=args.device,
                       runs_root=args.output, say=say)
    print(f"{results['target']}" + (f" on {results['data']} ({results['rows']} rows)" if results["data"] else ""))
    for line in table_lines(results):
        print("  " + line)
    for column, examples in (results.get("examples") or {}).items():
        for example in examples[:1]:
            print(f"  e.g. {column}: {example['answer']!r} (reference {example['reference']!r})")
    if results.get("saved_to"):
        print(f"saved: {results['saved_to']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2, default=str)
    return 0
