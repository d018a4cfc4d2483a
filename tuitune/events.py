"""Trainer events: small typed records with a `type` and a timestamp, plain dicts on the wire.

They travel UI-ward over a multiprocessing queue and are appended to the run's events.jsonl.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

STARTED = "started"        # config, model, trainable_params, total_params, device, max_steps
STEP = "step"              # step, max_steps, epoch, loss, lr, grad_norm, tokens_per_s, samples_per_s,
                           # mem_allocated_gb, mem_reserved_gb, eta_s, elapsed_s; DPO/ORPO add
                           # reward_chosen, reward_rejected, reward_margin, reward_accuracy (ORPO: nll_loss)
EVAL = "eval"              # step, eval_loss (DPO/ORPO: the reward fields too)
CHECKPOINT = "checkpoint"  # step, path; best=True and eval_loss when it holds the best evaluation so far
LOG = "log"                # level, text
WARNING = "warning"        # text
PAUSED = "paused"          # step
RESUMED = "resumed"        # step
FINISHED = "finished"      # summary: {final_loss, steps, runtime_s, adapter_path, stopped}
FAILED = "failed"          # kind, message, advice

TYPES = (STARTED, STEP, EVAL, CHECKPOINT, LOG, WARNING, PAUSED, RESUMED, FINISHED, FAILED)
TERMINAL = (FINISHED, FAILED)

# Controls, UI -> trainer.
PAUSE, RESUME, STOP, SAVE_NOW = "pause", "resume", "stop", "save_now"
CONTROLS = (PAUSE, RESUME, STOP, SAVE_NOW)


def make(type_: str, **fields: Any) -> dict[str, Any]:
    if type_ not in TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    return {"type": type_, "ts": time.time(), **fields}


def to_line(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), default=str)


def parse_line(line: str | bytes) -> dict[str, Any] | None:
    """One JSON object from a line, or None for a torn or foreign line."""
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def read_jsonl(path) -> Iterator[dict[str, Any]]:
    """Events of a file; a torn last line (a kill mid-write) is skipped."""
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            event = parse_line(line) if line.strip() else None
            if event is not None and "type" in event:
                yield event


class JsonlTail:
    """The complete JSON objects appended to a file since the last `poll()`; a torn last line waits
    for the next poll (`torn` says one waits). `from_end` skips what the file already holds;
    `skipped` counts complete lines that were not JSON objects."""

    def __init__(self, path, *, from_end: bool = False):
        self.path = Path(path)
        self._offset = self.path.stat().st_size if from_end and self.path.exists() else 0
        self._partial = b""
        self.skipped = 0

    @property
    def torn(self) -> bool:
        return bool(self._partial.strip())

    def poll(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except OSError:  # not there (yet, or any more) or unreadable: nothing new
            return []
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        found = [parse_line(line) for line in lines if line.strip()]
        self.skipped += sum(obj is None for obj in found)
        return [obj for obj in found if obj is not None]
