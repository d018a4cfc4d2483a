"""How many optimizer steps a run takes: one formula for the form's summary and the trainer's events."""

from __future__ import annotations

import math

from tuitune.config import Config, TrainingConfig


def effective_batch(training: TrainingConfig) -> int:
    """Examples per optimizer step."""
    return training.batch_size * training.gradient_accumulation_steps


def eval_rows(rows: int, eval_fraction: float) -> int:
    """Rows held out for evaluation: a fraction rounded down, at least one when evaluation is on."""
    return max(1, int(rows * eval_fraction)) if eval_fraction > 0 else 0


def planned_steps(training: TrainingConfig, train_rows: int) -> int:
    """Optimizer steps over `train_rows` rows: `max_steps`, else the epochs counted as transformers'
    Trainer counts them (every batch, the last one partial; every accumulation group, the last partial)."""
    if training.max_steps > 0:
        return training.max_steps
    if train_rows <= 0:
        return 0
    batches = math.ceil(train_rows / training.batch_size)
    per_epoch = max(math.ceil(batches / training.gradient_accumulation_steps), 1)
    return math.ceil(training.num_epochs * per_epoch)


def total_steps(config: Config, rows: int | None) -> int | None:
    """Steps of a run over a dataset of `rows` usable rows, after `data.max_rows` and the eval split
    (None: the row count is unknown and the run goes by epochs)."""
    if config.training.max_steps > 0:
        return config.training.max_steps
    if rows is None:
        return None
    if config.data.max_rows:
        rows = min(rows, config.data.max_rows)
    return planned_steps(config.training, rows - eval_rows(rows, config.data.eval_fraction))
