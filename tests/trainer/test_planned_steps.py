"""The trainer's planned step count is the one transformers' Trainer computes for the same rows."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tuitune.config import TrainingConfig
from tuitune.steps import planned_steps


@pytest.mark.parametrize("rows, batch, accumulation, epochs", [
    (285, 2, 4, 1.0), (285, 2, 4, 2.5), (90, 2, 4, 2.5), (10, 1, 3, 1.3), (7, 4, 1, 1.0), (1, 2, 4, 0.5),
    (1000, 3, 8, 3.0)])
def test_planned_steps_match_the_hf_trainer(rows, batch, accumulation, epochs):
    from torch.utils.data import DataLoader
    from transformers import Trainer

    args = SimpleNamespace(max_steps=-1, num_train_epochs=epochs, gradient_accumulation_steps=accumulation,
                           per_device_train_batch_size=batch)
    trainer = SimpleNamespace(get_total_train_batch_size=lambda a: batch * accumulation, get_sp_size=lambda: 1,
                              num_examples=lambda loader: len(loader.dataset), args=args)
    loader = DataLoader(list(range(rows)), batch_size=batch)
    hf_max_steps = Trainer.set_initial_training_values(trainer, args, loader)[-1]
    training = TrainingConfig(num_epochs=epochs, batch_size=batch, gradient_accumulation_steps=accumulation)
    assert planned_steps(training, rows) == hf_max_steps
