"""`evaluate(target, ...)`: base and tuned side by side on a held-out file and optional harness tasks, saved in
the run folder when the target is a run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from tuitune.config import Config
from tuitune.errors import TuituneError
from tuitune.evaluation import harness, heldout
from tuitune.evaluation.results import save_results

DEFAULT_LIMIT = 100


def held_out_path(target, data: str | None) -> tuple[str | None, str]:
    """The file to measure on and what it is: --data, else the run's data.eval_path."""
    if data:
        return data, "--data"
    config = _run_config(target)
    if config is not None and config.data.eval_path:
        return config.data.eval_path, "the run's data.eval_path"
    return None, ""


def _run_config(target) -> Config | None:
    if target.run is None:
        return None
    from tuitune.runs import RunDir

    return RunDir(target.run).load_config()


def evaluate(ref: str, *, data: str | None = None, tasks=None, limit: int = DEFAULT_LIMIT, device: str = "auto",
             runs_root=None, say: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Measure the target; returns the results (also saved in the run folder for a run)."""
    from tuitune.chat.hf_engine import load_model_and_tokenizer
    from tuitune.chat.targets import resolve_target

    target = resolve_target(ref, runs_root)
    if target.kind == "gguf":
        raise TuituneError(f"{ref} is a GGUF file; `tuitune eval` measures runs, adapters and Hugging Face models.")
    path, where = held_out_path(target, data)
    task_names, include = harness.resolve_tasks(tasks)  # fails fast, before any load
    if path is None and not task_names:
        raise TuituneError(f"Nothing to measure {target.label} on: give a held-out file with --data FILE (any "
                           "training format), lm-evaluation-harness tasks with --tasks, or train with "
                           "data.eval_path set.")
    config = _run_config(target) or Config()
    rows = _rows(path, config, limit) if path else []
    device = _device(device)
    say(f"Loading {target.label} on {device}")
    tokenizer, model = load_model_and_tokenizer(target, device)
    variants = [("base", True), ("tuned", False)] if target.has_adapter else [("base", False)]
    metrics: dict[str, dict[str, Any]] = {}
    examples: dict[str, Any] = {}
    for column, adapter_off in variants:
        with _adapter_disabled(model, adapter_off):
            if rows:
                say(f"{column}: perplexity and exact match on {len(rows)} rows of {path}")
                ppl = heldout.perplexity(model, tokenizer, rows, max_seq_length=config.model.max_seq_length,
                                         responses_only=config.data.responses_only,
                                         system_prompt=config.data.system_prompt or None)
                em = heldout.exact_match(model, tokenizer, rows, system_prompt=config.data.system_prompt or None,
                                         limit=limit)
                for name, value in (("loss", ppl["loss"]), ("perplexity", ppl["perplexity"]),
                                    ("exact_match", em["exact_match"])):
                    metrics.setdefault(name, {})[column] = value
                examples[column] = em.get("examples", [])
            if task_names:
                say(f"{column}: lm-evaluation-harness {', '.join(task_names)}")
                for name, value in harness.run_tasks(model, tokenizer, task_names, include, limit=limit).items():
                    metrics.setdefault(name, {})[column] = value
    results = {"ts": time.time(), "target": target.label, "base": target.base,
               "adapter": str(target.adapter) if target.adapter else None, "data": path, "data_from": where,
               "rows": len(rows), "tasks": task_names, "limit": limit, "device": device, "metrics": metrics,
               "examples": examples}
    if target.run is not None:
        results["saved_to"] = str(save_results(Path(target.run), results))
    return results


def _rows(path: str, config: Config, limit: int) -> list:
    from tuitune.data import load_rows

    fmt = None if config.data.format in ("auto", "preference") else config.data.format
    loaded = load_rows(path, format=fmt, columns=config.data.columns or None)
    rows = list(loaded.rows)
    if not rows:
        raise TuituneError(f"No usable rows in {path}. Run `tuitune data inspect {path}` to see why.")
    return rows[:limit] if limit else rows


def _device(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class _adapter_disabled:
    """`with model.disable_adapter()` when asked (the base of a PEFT model), else nothing."""

    def __init__(self, model, off: bool):
        self.context = model.disable_adapter() if off and hasattr(model, "disable_adapter") else None

    def __enter__(self):
        if self.context is not None:
            self.context.__enter__()

    def __exit__(self, *exc):
        if self.context is not None:
            return self.context.__exit__(*exc)
        return False
