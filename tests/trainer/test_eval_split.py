"""data.eval_fraction holds rows out of the training set, the same way for SFT rows and preference pairs."""

import pytest
from datasets import Dataset

from tuitune.config import Config, apply_overrides
from tuitune.errors import TuituneError
from tuitune.trainer.eval_data import split_off_eval


def _config(fraction: float, seed: int = 0) -> Config:
    return apply_overrides(Config(), {"data.eval_fraction": fraction, "training.seed": seed})


def test_no_fraction_keeps_every_row_for_training():
    rows = Dataset.from_dict({"x": list(range(10))})
    train, held_out = split_off_eval(rows, _config(0.0))
    assert held_out is None and len(train) == 10


def test_the_held_out_rows_are_disjoint_from_training_and_follow_the_seed():
    rows = Dataset.from_dict({"x": list(range(40))})
    train, held_out = split_off_eval(rows, _config(0.25, seed=3))
    assert (len(train), len(held_out)) == (30, 10)
    assert sorted(list(train["x"]) + list(held_out["x"])) == list(range(40))
    _, again = split_off_eval(rows, _config(0.25, seed=3))
    _, other_seed = split_off_eval(rows, _config(0.25, seed=4))
    assert list(again["x"]) == list(held_out["x"]) != list(other_seed["x"])


def test_a_fraction_that_leaves_nothing_to_train_on_names_the_field_and_the_unit():
    with pytest.raises(TuituneError) as caught:
        split_off_eval(Dataset.from_dict({"x": [1]}), _config(0.5), unit="pairs")
    assert "data.eval_fraction 0.5 leaves no training pairs out of 1" in str(caught.value)
