"""`training.profile_steps`: profile whole steps of the real trainer and write the breakdown.

Steps 1 to 3 warm up (compilation, autotuning, allocator growth); the profile then covers the next N
steps from one step's end to another's, so data loading, logging and callbacks count as they do in a
normal run. The breakdown (tuitune.trainer.step_profile) goes to `profile.json` in the run folder and,
as text, to train.log.
"""

from __future__ import annotations

import json

from transformers import TrainerCallback

from tuitune.runs import RunDir
from tuitune.trainer.step_profile import StepProfiler, format_profile

WARMUP_STEPS = 3
PROFILE_FILE = "profile.json"


class StepProfileCallback(TrainerCallback):
    def __init__(self, run: RunDir, steps: int, device: str, *, rank_max: int, vocab: int, log):
        self.run, self.steps, self.log = run, steps, log
        self.profiler = StepProfiler(device, rank_max=rank_max, vocab=vocab)
        self.first = None  # the first global step profiled, once started
        self.done = False

    def on_step_end(self, args, state, control, **kwargs):
        if self.done:
            return control
        if self.first is None and state.global_step >= WARMUP_STEPS:
            self.first = state.global_step + 1
            self.profiler.start()
        elif self.first is not None and state.global_step >= self.first + self.steps - 1:
            self._finish(state.global_step)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.done:
            return control
        if self.first is not None and state.global_step >= self.first:
            self._finish(state.global_step)  # the run ended (stop, max_steps) inside the window
        else:
            if self.first is not None:
                self.profiler.stop(0)
            self.done = True
            self.log(f"training.profile_steps: the run ended before step {WARMUP_STEPS + 1}, so nothing was "
                     "profiled (the first steps warm up). Run more steps to profile.")
        return control

    def _finish(self, step: int) -> None:
        self.done = True
        report = self.profiler.stop(step - self.first + 1)
        report.update(first_step=self.first, last_step=step)
        (self.run.path / PROFILE_FILE).write_text(json.dumps(report, indent=1), encoding="utf-8")
        self.log(f"profile of steps {self.first}-{step} (written to {PROFILE_FILE}):\n" + format_profile(report))
