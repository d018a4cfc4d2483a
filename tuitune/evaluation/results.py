"""Evaluation results on disk: `eval/results-<time>.json` in the run folder, the latest also as `eval.json`.

Pure Python: the Runs screen and `tuitune runs` read them without loading a model.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

LATEST = "eval.json"
HISTORY = "eval"


def save_results(run_path: Path, results: dict[str, Any]) -> Path:
    """Write `results` into the run folder (atomically); returns the history file's path."""
    run_path = Path(run_path)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(results.get("ts", time.time())))
    history = run_path / HISTORY / f"results-{stamp}.json"
    history.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str)
    for target in (history, run_path / LATEST):
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    return history


def load_latest(run_path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads((Path(run_path) / LATEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_lines(results: dict[str, Any]) -> list[str]:
    """The results as aligned text: one line per metric, base and tuned side by side."""
    metrics: dict[str, dict[str, Any]] = results.get("metrics") or {}
    columns = [c for c in ("base", "tuned") if any(c in row for row in metrics.values())]
    width = max([len(name) for name in metrics] + [6])
    lines = [f"{'metric':<{width}}  " + "  ".join(f"{c:>10}" for c in columns)]
    for name, row in metrics.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{_fmt(row.get(c)):>10}" for c in columns))
    return lines


def summary_text(results: dict[str, Any]) -> str:
    """One line for the Runs screen: the held-out perplexity and exact match, base -> tuned."""
    metrics = results.get("metrics") or {}
    parts = []
    for name in ("perplexity", "exact_match"):
        row = metrics.get(name)
        if row:
            base, tuned = row.get("base"), row.get("tuned")
            parts.append(f"{name} {_fmt(base)} → {_fmt(tuned)}" if base is not None and tuned is not None
                         else f"{name} {_fmt(tuned if tuned is not None else base)}")
    tasks = [n for n in metrics if n not in ("perplexity", "exact_match", "loss")]
    if tasks:
        parts.append(f"{len(tasks)} task metric(s)")
    return "; ".join(parts) or "no metrics"
