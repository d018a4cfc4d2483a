"""Milliseconds a call of a GPU function takes, by CUDA events, for the device scripts beside it."""

from __future__ import annotations

import torch


def ms_per_call(fn, reps: int) -> float:
    """``fn()`` once to warm up, then ``reps`` calls between two CUDA events: their mean in ms."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps
