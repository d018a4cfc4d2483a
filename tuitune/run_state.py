"""What a run's events add up to: the one reducer behind the Runs list, `tuitune runs` and the Monitor.

`RunState.apply(event)` folds one event in. The status it reaches from events alone is created,
running, paused, finished, stopped or failed; whether a run without a final event still trains or
died (failed, its last checkpoint named) needs its trainer's pid, which tuitune.runs.settle adds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from tuitune import events as ev

ACTIVE = ("running", "paused")        # a trainer may still be at work
ENDED = ("finished", "stopped", "failed")


@dataclass
class RunState:
    status: str = "created"  # created | running | paused | finished | stopped | failed
    model: str = ""
    method: str = ""
    dtype: str = ""
    device: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    step: int = 0
    max_steps: int = 0
    last_step: dict[str, Any] = field(default_factory=dict)   # the latest `step` event
    final_loss: float | None = None
    eval_loss: float | None = None
    objective: str = ""                      # sft | dpo | orpo | cpt (runs from before objectives: "")
    best_step: int | None = None             # the checkpoint holding the lowest eval loss
    best_eval_loss: float | None = None
    error: str | None = None
    last_event: dict[str, Any] = field(default_factory=dict)

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        self.last_event = event
        if kind == ev.STARTED:
            self.started_at = event.get("ts")
            self.model = str(event.get("model", ""))
            self.method = str(event.get("method") or "")
            self.dtype = str(event.get("dtype") or "")
            self.device = str(event.get("device", ""))
            self.objective = str(event.get("objective") or "")
            self.max_steps = int(event.get("max_steps") or 0)
            self.status = "running"
        elif kind == ev.STEP:
            self.last_step = event
            self.step = event.get("step", self.step)
            self.max_steps = int(event.get("max_steps") or self.max_steps)
            if event.get("loss") is not None:
                self.final_loss = event["loss"]
            if self.status != "paused":
                self.status = "running"
        elif kind == ev.EVAL:
            if event.get("eval_loss") is not None:
                self.eval_loss = float(event["eval_loss"])
        elif kind == ev.CHECKPOINT and event.get("best"):
            self.best_step = event.get("step")
            self.best_eval_loss = event.get("eval_loss")
        elif kind == ev.PAUSED:
            self.status = "paused"
        elif kind == ev.RESUMED:
            self.status = "running"
        elif kind == ev.FINISHED:
            self.ended_at = event.get("ts")
            summary = event.get("summary") or {}
            self.status = "stopped" if summary.get("stopped") else "finished"
            if summary.get("final_loss") is not None:
                self.final_loss = summary["final_loss"]
        elif kind == ev.FAILED:
            self.ended_at = event.get("ts")
            self.status = "failed"
            self.error = event.get("message")

    def apply_all(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            self.apply(event)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else (
            time.time() if self.status in ACTIVE else self.last_event.get("ts", self.started_at))
        return max(0.0, end - self.started_at)
