"""The best evaluation so far: which checkpoint holds it, its marker in the run directory, early stopping.

`BestTracker.evaluated(step, eval_loss)` says whether the evaluation is a new best (the training loop
then saves a checkpoint at that step) and whether patience has run out. `saved(step, folder)` marks
the checkpoint of a best step: a `BEST` file inside it and `best.json` at the run's top level
(`{"step", "eval_loss", "path"}`), which the Runs screen and `tuitune runs` read. Checkpoint rotation
never deletes the marked folder.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from tuitune.runs import RunDir

BEST_MARKER = "BEST"
BEST_FILE = "best.json"


def read_best(run_path: Path) -> dict | None:
    """The run's best.json, or None when there is none (or it is unreadable)."""
    try:
        value = json.loads((Path(run_path) / BEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class BestTracker:
    def __init__(self, run: RunDir, patience: int = 0, min_delta: float = 0.0):
        self.run = run
        self.patience = patience
        self.min_delta = min_delta
        previous = read_best(run.path) or {}
        self.best_loss: float | None = previous.get("eval_loss")
        self.best_step: int | None = previous.get("step")
        self.best_path: Path | None = Path(previous["path"]) if previous.get("path") else None
        self.pending: tuple[int, float] | None = None   # a best step whose checkpoint is not written yet
        self.bad_evals = 0
        self.last_step: int | None = None   # the step of the latest evaluation

    def evaluated(self, step: int, eval_loss: float | None) -> tuple[bool, bool]:
        """(new best, patience exhausted) for one evaluation."""
        self.last_step = step
        if eval_loss is None or not math.isfinite(eval_loss):
            return False, False
        if self.best_loss is None or eval_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_step, self.bad_evals = eval_loss, step, 0
            self.pending = (step, eval_loss)
            return True, False
        self.bad_evals += 1
        return False, bool(self.patience) and self.bad_evals >= self.patience

    def saved(self, step: int, folder: Path) -> dict | None:
        """Mark `folder` (a checkpoint or the final adapter) as the best when `step` is the pending best."""
        if self.pending is None or self.pending[0] != step:
            return None
        _, loss = self.pending
        self.pending = None
        if self.best_path is not None and self.best_path != folder:
            try:
                (self.best_path / BEST_MARKER).unlink()
            except OSError:
                pass
        folder = Path(folder)
        record = {"step": step, "eval_loss": loss, "path": str(folder), "ts": time.time()}
        (folder / BEST_MARKER).write_text(json.dumps(record), encoding="utf-8")
        tmp = self.run.path / f".{BEST_FILE}.tmp"
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, self.run.path / BEST_FILE)
        self.best_path = folder
        return record

    def protects(self, folder: Path) -> bool:
        """Whether rotation must keep `folder` (it holds the best evaluation)."""
        return self.best_path is not None and Path(folder) == self.best_path

    def checkpoint_to_restore(self) -> Path | None:
        """With early stopping on, the best checkpoint whose adapter the final one should be (None: keep the
        last weights, which are the best or the only ones evaluated)."""
        if not self.patience or self.best_path is None or not self.best_path.exists():
            return None
        if self.best_path.parent != self.run.checkpoints_dir:
            return None
        return self.best_path
