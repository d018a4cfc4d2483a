"""Fetch the next optimizer step's batches while the GPU still runs this step.

The Trainer fetches a step's batches (dataset rows, collation, the copy to the GPU) when the step
starts, and with `logging_steps = 1` (the default) the previous step's log has just waited for the GPU
to finish, to read the loss. So that host work runs with the GPU idle: 1.3 to 1.6 ms a step for 2 x
1,024 tokens on the 2-core CPU machine, and `tuitune train` at llama-1b (graphed layers, H100, session
22) stepped in 80.9 ms where the bench's loop, which makes its batch outside the step, took 78.7.

Here, at the end of a step and before that wait, as many batches as the Trainer took last time are
taken ahead from the epoch's iterator and held; the Trainer's next `get_batch_samples` is handed them
first. The batches, their order and what the step does with them are unchanged; only when they are
fetched moves. On the last step of the run nothing is taken ahead. `TUITUNE_BATCHES_AHEAD=0` turns it
off (to measure it against the Trainer's own order).
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback


class BatchesAhead(TrainerCallback):
    """Installed on a Trainer by `install`; its `on_step_end` takes the next batches ahead."""

    def __init__(self, take_batches):
        self._take_batches = take_batches  # the Trainer's own get_batch_samples, bound
        self._iterator = None  # the epoch iterator the Trainer last asked from
        self._held: list = []  # batches taken ahead from it, in order
        self._ran_out = False  # it ended while batches were taken ahead
        self._wanted = 0  # how many batches the Trainer asked for last time

    @classmethod
    def install(cls, trainer: Any) -> BatchesAhead | None:
        if os.environ.get("TUITUNE_BATCHES_AHEAD", "1") == "0":
            return None
        ahead = cls(trainer.get_batch_samples)
        trainer.get_batch_samples = ahead.get_batch_samples
        # First among the callbacks, so that none that reads from the GPU at the step's end runs before it.
        trainer.callback_handler.callbacks.insert(0, ahead)
        return ahead

    def get_batch_samples(self, epoch_iterator, num_batches: int, device):
        if epoch_iterator is not self._iterator:  # a new epoch: nothing held belongs to it
            self._iterator, self._held, self._ran_out = epoch_iterator, [], False
        self._wanted = num_batches
        return self._take_batches(_HeldFirst(self), num_batches, device)

    def on_step_end(self, args, state, control, **kwargs):
        if self._iterator is None or (state.max_steps > 0 and state.global_step >= state.max_steps):
            return control
        while len(self._held) < self._wanted and not self._ran_out:
            try:
                self._held.append(next(self._iterator))
            except StopIteration:
                self._ran_out = True
        return control

    def _next(self):
        if self._held:
            return self._held.pop(0)
        if self._ran_out:
            raise StopIteration
        return next(self._iterator)


class _HeldFirst:
    """The epoch iterator as the Trainer sees it: the held batches, then the rest. Not a generator:
    one that delegated with `yield from` would close the epoch's iterator when it is dropped."""

    def __init__(self, ahead: BatchesAhead):
        self._ahead = ahead

    def __iter__(self):
        return self

    def __next__(self):
        return self._ahead._next()
