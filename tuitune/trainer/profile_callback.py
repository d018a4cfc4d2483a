"""`training.profile_steps`: profile whole steps of the real trainer and write the breakdown.

Steps 1 to 3 warm up (compilation, autotuning, allocator growth); then each of profile_windows'
windows (the kernels, on a GPU the GPU-only timeline, then the host) covers the next N steps in turn,
from one step's end to another's, so data loading, logging and callbacks count as they do in a normal
run. The profile (tuitune.trainer.step_profile's breakdown, with the timeline and the host's beside
it) goes to `profile.json` in the run folder and, as text, to train.log; its first_step and last_step
span every window. A run that ends inside a window keeps the windows closed so far and that window's
steps.
"""

from __future__ import annotations

import json

from transformers import TrainerCallback

from tuitune.runs import RunDir
from tuitune.trainer.profile_windows import profile_windows, report, window_names
from tuitune.trainer.step_profile import format_profile

WARMUP_STEPS = 3
PROFILE_FILE = "profile.json"


def steps_profiled(profile_steps: int, device: str = "cuda") -> int:
    """How many steps `training.profile_steps = profile_steps` profiles on ``device``: every window's."""
    return len(window_names(device)) * profile_steps


class StepProfileCallback(TrainerCallback):
    def __init__(self, run: RunDir, steps: int, device: str, *, rank_max: int, vocab: int, log):
        self.run, self.steps, self.log = run, steps, log
        self.windows = profile_windows(device, rank_max=rank_max, vocab=vocab)
        self.reports: dict[str, dict] = {}
        self.first = None  # the first global step profiled, once started
        self.window_first = None  # the first global step of the open window
        self.done = False

    def _open(self, step: int) -> None:
        self.window_first = step + 1
        self.windows[len(self.reports)][1].start()

    def _close(self, step: int) -> None:
        name, profiler = self.windows[len(self.reports)]
        self.reports[name] = profiler.stop(step - self.window_first + 1)

    def on_step_end(self, args, state, control, **kwargs):
        if self.done:
            return control
        step = state.global_step
        if self.first is None:
            if step >= WARMUP_STEPS:
                self.first = step + 1
                self._open(step)
        elif step >= self.window_first + self.steps - 1:
            self._close(step)
            if len(self.reports) < len(self.windows):
                self._open(step)
            else:
                self._finish(step)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.done:
            return control
        step = state.global_step
        if self.first is None or step < self.first:
            if self.first is not None:
                self.windows[0][1].stop(0)
            self.done = True
            self.log(f"training.profile_steps: the run ended before step {WARMUP_STEPS + 1}, so nothing was "
                     "profiled (the first steps warm up). Run more steps to profile.")
            return control
        # the run ended (stop, max_steps) inside a window: keep it if it saw a step
        name, profiler = self.windows[len(self.reports)]
        steps = step - self.window_first + 1
        result = profiler.stop(max(steps, 0))
        if steps > 0:
            self.reports[name] = result
        self._finish(step)
        return control

    def _finish(self, step: int) -> None:
        self.done = True
        profile = dict(report(self.reports), first_step=self.first, last_step=step)
        (self.run.path / PROFILE_FILE).write_text(json.dumps(profile, indent=1), encoding="utf-8")
        self.log(f"profile of steps {self.first}-{step} (written to {PROFILE_FILE}):\n" + format_profile(profile))
