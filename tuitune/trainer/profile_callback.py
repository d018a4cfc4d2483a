"""`training.profile_steps`: profile whole steps of the real trainer and write the breakdown.

Steps 1 to 3 warm up (compilation, autotuning, allocator growth); the kernel profile then covers the
next N steps from one step's end to another's, so data loading, logging and callbacks count as they do
in a normal run, and a host profile (tuitune.trainer.host_profile) the N steps after those. The
breakdown (tuitune.trainer.step_profile) goes to `profile.json` in the run folder and, as text, to
train.log; its first_step and last_step span both windows.
"""

from __future__ import annotations

import json

from transformers import TrainerCallback

from tuitune.runs import RunDir
from tuitune.trainer.host_profile import HostProfiler
from tuitune.trainer.step_profile import StepProfiler, format_profile

WARMUP_STEPS = 3
PROFILE_FILE = "profile.json"


def steps_profiled(profile_steps: int) -> int:
    """How many steps `training.profile_steps = profile_steps` profiles: the kernel window, then the host's."""
    return 2 * profile_steps


class StepProfileCallback(TrainerCallback):
    def __init__(self, run: RunDir, steps: int, device: str, *, rank_max: int, vocab: int, log):
        self.run, self.steps, self.log = run, steps, log
        self.profiler = StepProfiler(device, rank_max=rank_max, vocab=vocab)
        self.host = HostProfiler()
        self.first = None  # the first global step profiled, once started
        self.report: dict | None = None  # the kernel profile, once its window closed
        self.done = False

    def on_step_end(self, args, state, control, **kwargs):
        if self.done:
            return control
        step = state.global_step
        if self.first is None and step >= WARMUP_STEPS:
            self.first = step + 1
            self.profiler.start()
        elif self.first is not None and self.report is None and step >= self.first + self.steps - 1:
            self._close_kernel_window(step)  # the kernel profile's stop waited for the GPU
            self.host.start()
        elif self.report is not None and step >= self.first + steps_profiled(self.steps) - 1:
            self._finish(step, self._stop_host(self.steps))
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.done:
            return control
        step = state.global_step
        if self.first is None or step < self.first:
            if self.first is not None:
                self.profiler.stop(0)
            self.done = True
            self.log(f"training.profile_steps: the run ended before step {WARMUP_STEPS + 1}, so nothing was "
                     "profiled (the first steps warm up). Run more steps to profile.")
        elif self.report is None:  # the run ended (stop, max_steps) inside the kernel window
            self._close_kernel_window(step)
            self._finish(step, None)
        else:  # inside the host window
            host_steps = step - (self.first + self.steps) + 1
            self._finish(step, self._stop_host(host_steps) if host_steps > 0 else None)
        return control

    def _close_kernel_window(self, step: int) -> None:
        self.report = self.profiler.stop(step - self.first + 1)

    def _stop_host(self, steps: int) -> dict:
        self.profiler.synchronize()  # the host window ends when its steps' kernels have run
        return self.host.stop(steps)

    def _finish(self, step: int, host: dict | None) -> None:
        self.done = True
        report = dict(self.report, first_step=self.first, last_step=step)
        if host is not None:
            report["host"] = host
        (self.run.path / PROFILE_FILE).write_text(json.dumps(report, indent=1), encoding="utf-8")
        self.log(f"profile of steps {self.first}-{step} (written to {PROFILE_FILE}):\n" + format_profile(report))
