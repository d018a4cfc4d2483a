"""training.objective: auto follows the data's format; an explicit objective must suit the data."""

from __future__ import annotations

import json

import pytest

from tuitune.config import Config, ConfigError, apply_overrides, config_from_dict
from tuitune.errors import TuituneError
from tuitune.objective import objective_for, resolve_objective


def config_with(**overrides) -> Config:
    return apply_overrides(Config(), overrides)


@pytest.mark.parametrize("fmt, expected", [("preference", "dpo"), ("text", "cpt"), ("messages", "sft"),
                                           ("alpaca", "sft"), ("sharegpt", "sft")])
def test_auto_follows_the_format(fmt, expected):
    assert objective_for(Config(), fmt).name == expected


@pytest.mark.parametrize("objective, fmt, named", [("dpo", "messages", "preference pairs"),
                                                   ("orpo", "text", "preference pairs"),
                                                   ("cpt", "alpaca", "plain text"),
                                                   ("sft", "preference", "dpo, orpo or auto")])
def test_a_mismatch_is_one_clear_error(objective, fmt, named):
    with pytest.raises(TuituneError) as info:
        objective_for(config_with(**{"training.objective": objective}), fmt, "pairs.jsonl")
    assert named in info.value.message and "training.objective" in info.value.message


def test_resolve_reads_the_files_format(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    assert resolve_objective(config_with(**{"data.path": str(pairs)})).name == "dpo"
    text = tmp_path / "text.jsonl"
    text.write_text(json.dumps({"text": "some words"}) + "\n")
    assert resolve_objective(config_with(**{"data.path": str(text)})).name == "cpt"
    assert resolve_objective(Config()).name == "sft"  # the bundled sample


def test_method_fields_are_checked_together():
    with pytest.raises(ConfigError) as info:
        config_from_dict({"training": {"early_stopping_patience": 2, "objective": "dpo",
                                       "embedding_learning_rate": 1e-5, "dpo_beta": 0},
                          "data": {}})
    text = str(info.value)
    assert "training.early_stopping_patience needs eval data" in text
    assert "training.embedding_learning_rate applies to continued pretraining" in text
    assert "training.dpo_beta must be between" in text
    with pytest.raises(ConfigError):
        config_from_dict({"data": {"eval_path": "e.jsonl", "eval_fraction": 0.1}})
    assert config_from_dict({"data": {"eval_path": "e.jsonl"}, "training": {"eval_steps": 5}}).data.eval_path
