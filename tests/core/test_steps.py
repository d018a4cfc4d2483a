"""Step planning: the form's total and the trainer's `max_steps` come from one formula."""

from __future__ import annotations

from tuitune.config import Config
from tuitune.steps import effective_batch, eval_rows, planned_steps, total_steps


def test_total_steps_arithmetic():
    config = Config()
    config.training.batch_size, config.training.gradient_accumulation_steps = 2, 4
    assert effective_batch(config.training) == 8
    assert total_steps(config, None) is None
    assert total_steps(config, 285) == 36          # ceil(ceil(285 / 2) / 4) = ceil(143 / 4)
    config.training.num_epochs = 2.5
    assert total_steps(config, 285) == 90
    config.data.max_rows = 100
    config.data.eval_fraction = 0.1                # 90 training rows -> 45 batches -> 12 steps/epoch
    assert total_steps(config, 285) == 30
    config.training.max_steps = 7
    assert total_steps(config, 285) == 7


def test_eval_rows_round_down_and_keep_at_least_one():
    assert eval_rows(1000, 0.0) == 0
    assert eval_rows(1000, 0.05) == 50
    assert eval_rows(100, 0.29) == 28              # 28.999... rounds down, as the trainer's split does
    assert eval_rows(10, 0.01) == 1


def test_few_rows_still_make_one_step_per_epoch():
    config = Config()
    assert planned_steps(config.training, 1) == 1  # one partial batch, one partial accumulation group
    assert planned_steps(config.training, 0) == 0
