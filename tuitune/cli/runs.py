"""`tuitune runs`: every run with its status, progress, duration and final loss."""

from __future__ import annotations

from tuitune.cli.progress import duration_text
from tuitune.paths import runs_root
from tuitune.runs import list_runs


def register(subparsers) -> None:
    parser = subparsers.add_parser("runs", help="list runs with status and final loss",
                                   description="List the runs under the runs root, newest first.")
    parser.add_argument("--output", metavar="DIR", help="runs root folder")
    parser.set_defaults(func=run)


def run(args) -> int:
    root = runs_root(args.output)
    runs = list_runs(args.output)
    if not runs:
        print(f"no runs in {root} (start one with `tuitune train`)")
        return 0
    header = f"{'RUN':<44} {'STATUS':<11} {'STEPS':>11} {'TIME':>8} {'LOSS':>8}  MODEL"
    print(header)
    for info in runs:
        steps = f"{info.step}/{info.max_steps}" if info.max_steps else str(info.step)
        loss = f"{info.final_loss:.4f}" if info.final_loss is not None else "-"
        print(f"{info.name[:44]:<44} {info.status:<11} {steps:>11} {duration_text(info.duration_s):>8} "
              f"{loss:>8}  {info.model}")
        if info.status == "failed" and info.error:
            print(f"  {info.error}")
    print(f"\n{len(runs)} run(s) in {root}")
    return 0
