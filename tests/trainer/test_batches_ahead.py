"""The next step's batches are fetched at the end of a step, before its log waits for the GPU, and
training sees the same batches in the same order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import transformers

from tests.trainer.test_training import run_training
from tuitune.trainer.batches_ahead import BatchesAhead

pytestmark = pytest.mark.timeout(400)


class Epoch:
    """An epoch's iterator that counts the batches taken from it."""

    def __init__(self, epoch: int, batches: int):
        self._batches = iter([f"e{epoch}b{i}" for i in range(batches)])
        self.taken = 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self._batches)
        self.taken += 1
        return batch


def take_batches(iterator, num_batches, device):
    """transformers.Trainer.get_batch_samples without the item count."""
    taken = []
    for _ in range(num_batches):
        try:
            taken.append(next(iterator))
        except StopIteration:
            break
    return taken, None


def trainer_loop(get_batches, on_step_end, *, epochs: int, batches: int, accumulation: int, max_steps: int):
    """The Trainer's outer loop: per optimizer step, its batches (the last step of an epoch takes the
    remainder), then on_step_end; returns each step's batches and what each epoch's iterator had given
    out when each step ended."""
    steps, taken_at_step_end, state = [], [], SimpleNamespace(global_step=0, max_steps=max_steps)
    for epoch in range(epochs):
        iterator = Epoch(epoch, batches)
        updates = -(-batches // accumulation)
        for update in range(updates):
            wanted = accumulation if update < updates - 1 else batches - accumulation * (updates - 1)
            steps.append(get_batches(iterator, wanted, None)[0])
            state.global_step += 1
            on_step_end(None, state, None)
            taken_at_step_end.append(iterator.taken)
            if state.global_step >= max_steps:
                return steps, taken_at_step_end
    return steps, taken_at_step_end


@pytest.mark.parametrize("batches, accumulation", [(7, 3), (6, 2), (5, 1), (2, 4)])
def test_the_same_batches_reach_the_same_steps(batches, accumulation):
    plain = trainer_loop(take_batches, lambda *a: None, epochs=3, batches=batches, accumulation=accumulation,
                         max_steps=10 ** 6)
    ahead = BatchesAhead(take_batches)
    held = trainer_loop(ahead.get_batch_samples, ahead.on_step_end, epochs=3, batches=batches,
                        accumulation=accumulation, max_steps=10 ** 6)
    assert held[0] == plain[0]
    assert sum(len(step) for step in held[0]) == 3 * batches


def test_a_step_ends_with_the_next_steps_batches_already_taken():
    ahead = BatchesAhead(take_batches)
    steps, taken = trainer_loop(ahead.get_batch_samples, ahead.on_step_end, epochs=1, batches=7,
                                accumulation=3, max_steps=10 ** 6)
    assert [len(step) for step in steps] == [3, 3, 1]
    # without taking ahead: 3, 6, 7; ahead, each step's end has the next step's batches too
    assert taken == [6, 7, 7]


def test_the_last_step_of_the_run_takes_nothing_ahead():
    ahead = BatchesAhead(take_batches)
    steps, taken = trainer_loop(ahead.get_batch_samples, ahead.on_step_end, epochs=1, batches=9,
                                accumulation=2, max_steps=2)
    assert steps == [["e0b0", "e0b1"], ["e0b2", "e0b3"]]
    assert taken == [4, 4]


def _record_order(monkeypatch) -> list[tuple[str, int]]:
    order = []
    log, step_end = transformers.Trainer.log, BatchesAhead.on_step_end

    def logged(self, logs, *args, **kwargs):
        if "loss" in logs:
            order.append(("log", self.state.global_step))
        return log(self, logs, *args, **kwargs)

    def ended(self, args, state, control, **kwargs):
        result = step_end(self, args, state, control, **kwargs)
        order.append(("held", len(self._held)))
        return result

    monkeypatch.setattr(transformers.Trainer, "log", logged)
    monkeypatch.setattr(BatchesAhead, "on_step_end", ended)
    return order


def test_training_takes_the_next_batch_before_the_log_and_keeps_its_losses(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TUITUNE_LAGGED_LOG", "0")  # each step's log right after it (lagged: test_lagged_log)
    order = _record_order(monkeypatch)
    steps = {"training.max_steps": 4, "training.logging_steps": 1}
    _, _, ahead = run_training(tiny_model_dir, tmp_path, "ahead", **steps)
    assert order == [("held", 1), ("log", 1), ("held", 1), ("log", 2), ("held", 1), ("log", 3),
                     ("held", 0), ("log", 4)], order
    monkeypatch.setenv("TUITUNE_BATCHES_AHEAD", "0")
    order.clear()
    _, _, plain = run_training(tiny_model_dir, tmp_path, "plain", **steps)
    assert sorted(ahead) == sorted(plain) == [1, 2, 3, 4]
    assert [ahead[s] for s in sorted(ahead)] == [plain[s] for s in sorted(plain)]
    assert order == [("log", 1), ("log", 2), ("log", 3), ("log", 4)]  # off: nothing taken ahead
