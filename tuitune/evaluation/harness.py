"""lm-evaluation-harness tasks through its Python API, when `lm_eval` is installed.

A task is a name from the harness's registry or a local task YAML file (its folder is added to the
registry, so a task reading a local data file runs offline). A registry task reads its data from the
Hugging Face Hub: offline, it fails at once with advice instead of hanging on downloads.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from tuitune.errors import TuituneError


def split_tasks(spec: str | list[str] | None) -> list[str]:
    if not spec:
        return []
    items = spec if isinstance(spec, list) else [spec]
    return [name.strip() for item in items for name in item.split(",") if name.strip()]


def _yaml_task_name(path: Path) -> str:
    """The `task:` name a task YAML declares (read without a YAML library: one top-level key)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TuituneError(f"Task file {path} cannot be read ({exc.strerror or exc}).") from None
    for line in text.splitlines():
        if line.startswith("task:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    raise TuituneError(f"Task file {path} has no top-level `task:` name. lm-evaluation-harness task files "
                       "start with `task: NAME`.")


def resolve_tasks(spec) -> tuple[list[str], list[str]]:
    """(task names, folders to add to the registry). TuituneError when lm_eval is missing, or a hub task is
    asked for while the Hub cannot be reached."""
    names = split_tasks(spec)
    if not names:
        return [], []
    if importlib.util.find_spec("lm_eval") is None:
        raise TuituneError("--tasks needs lm-evaluation-harness, which is not installed: `pip install lm_eval`. "
                           "Perplexity and exact match on --data work without it.")
    tasks, include = [], []
    hub_tasks = []
    for name in names:
        path = Path(name).expanduser()
        if name.endswith((".yaml", ".yml")):
            if not path.exists():
                raise TuituneError(f"Task file {path} does not exist.")
            tasks.append(_yaml_task_name(path))
            include.append(str(path.resolve().parent))
        else:
            tasks.append(name)
            hub_tasks.append(name)
    if hub_tasks:
        from tuitune.data.hub import offline_reason

        why = offline_reason()
        if why:
            raise TuituneError(f"The lm-evaluation-harness task(s) {', '.join(hub_tasks)} download their data "
                               f"from the Hugging Face Hub, which cannot be reached ({why}). Run them online, or "
                               "write a local task YAML (dataset_path: json with data_files on disk) and pass "
                               "its path to --tasks.")
    return tasks, include


def run_tasks(model, tokenizer, tasks: list[str], include: list[str], *, limit: int | None) -> dict[str, Any]:
    """{"task/metric": value} for every task's numeric metrics (stderr left out)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=include or None)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=1)
    try:
        output = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit,
                                         log_samples=False, bootstrap_iters=0)
    except KeyError as exc:
        raise TuituneError(f"lm-evaluation-harness does not know the task {exc}. `lm_eval --tasks list` lists "
                           "them; a local file needs a path ending in .yaml.") from None
    found: dict[str, Any] = {}
    for task, metrics in (output or {}).get("results", {}).items():
        for key, value in metrics.items():
            if "stderr" in key or key.startswith(("sample_len", "alias")) or not isinstance(value, (int, float)) \
                    or isinstance(value, bool):
                continue
            found[f"{task}/{key.split(',')[0]}"] = float(value)
    return found
