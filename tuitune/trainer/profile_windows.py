"""The windows a step profile is taken in, one after another, each over its own whole steps.

Each way of recording slows the host differently, so none of them shares its steps with another:
- ``kernels``: operators (with shapes) and, on a GPU, kernels: the breakdown by kind (step_profile);
- ``timeline`` (GPU only): the GPU's activity alone, with the host at its real pace, so its idle time
  and gaps are those of an unprofiled step;
- ``host``: cProfile of the Python that drives the steps (host_profile), closed once the window's
  kernels have run.
`tuitune bench --profile` and the trainer's `training.profile_steps` both take these windows; `report`
folds them into one profile: the kernels' breakdown with ``timeline`` and ``host`` beside it.
"""

from __future__ import annotations

from tuitune.trainer.host_profile import HostProfiler
from tuitune.trainer.step_profile import StepProfiler

KERNELS, TIMELINE, HOST = "kernels", "timeline", "host"


class _HostWindow:
    def __init__(self, device: str):
        self._host = HostProfiler()
        self._device = StepProfiler(device)  # only for its synchronize

    def start(self) -> None:
        self._host.start()

    def stop(self, steps: int) -> dict:
        self._device.synchronize()
        return self._host.stop(steps)


def window_names(device: str) -> tuple[str, ...]:
    """The windows a profile on ``device`` takes, in order: the timeline only on a GPU."""
    return (KERNELS, TIMELINE, HOST) if device == "cuda" else (KERNELS, HOST)


def profile_windows(device: str, *, rank_max: int, vocab: int) -> list[tuple[str, object]]:
    """(name, profiler) for each of `window_names`; every profiler has ``start()`` and
    ``stop(steps) -> dict``."""
    profilers = {KERNELS: StepProfiler(device, rank_max=rank_max, vocab=vocab),
                 TIMELINE: StepProfiler(device, rank_max=rank_max, vocab=vocab, gpu_only=True),
                 HOST: _HostWindow(device)}
    return [(name, profilers[name]) for name in window_names(device)]


def report(reports: dict[str, dict]) -> dict:
    """One profile from the windows' reports (a window that never closed is simply absent)."""
    merged = dict(reports[KERNELS])
    for name in (TIMELINE, HOST):
        if name in reports:
            merged[name] = reports[name]
    return merged


def profile_steps(step_fn, steps: int, *, rank_max: int = 64, vocab: int = 0, device: str = "cuda") -> dict:
    """Profile ``steps`` calls of ``step_fn`` (each one full training step) in each window in turn
    (the kernels, on a GPU the timeline, then the host); times in milliseconds."""
    reports = {}
    for name, profiler in profile_windows(device, rank_max=rank_max, vocab=vocab):
        profiler.start()
        for _ in range(steps):
            step_fn()
        reports[name] = profiler.stop(steps)
    return report(reports)
