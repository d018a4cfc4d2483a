"""The config schema: defaults, TOML round trip, every bad field reported at once, CLI overrides."""

from __future__ import annotations

import tomllib

import pytest

from tuitune.cli.main import main
from tuitune.config import (FIELDS, Config, ConfigError, apply_overrides, config_from_dict, load_config,
                            save_config, to_toml)
from tuitune.errors import TuituneError


def test_guide_defaults():
    c = Config()
    assert (c.lora.r, c.lora.alpha, c.lora.dropout) == (16, 16, 0.0)
    assert c.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (c.training.learning_rate, c.training.lr_scheduler, c.training.warmup_steps) == (2e-4, "cosine", 5)
    assert (c.training.weight_decay, c.training.max_grad_norm, c.training.seed) == (0.01, 0.3, 3407)
    assert c.training.optimizer == "auto" and c.training.gradient_checkpointing != "none"


def test_every_field_has_help_and_a_valid_default():
    for spec in FIELDS.values():
        assert spec.help and len(spec.help) < 110, spec.key
        if spec.choices:
            assert spec.default in spec.choices, spec.key
        if spec.min is not None:
            assert spec.min <= spec.default <= spec.max, spec.key


def test_round_trip_through_toml(tmp_path):
    changed = apply_overrides(Config(), {"model.name": 'weird "name"\\path', "lora.r": 64,
                                         "training.learning_rate": 1e-5, "data.packing": True,
                                         "lora.target_modules": ["q_proj", "v_proj"]})
    path = tmp_path / "run.toml"
    save_config(changed, path)
    assert load_config(path) == changed
    assert config_from_dict(tomllib.loads(to_toml(Config()))) == Config()


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        config_from_dict({
            "model": {"method": "full-ish", "max_seq_length": 8},
            "lora": {"r": "sixteen", "dropout": 2.0, "rank": 4},
            "training": {"learning_rate": "fast", "use_kernels": "maybe", "max_steps": 1.5},
            "extras": {},
        })
    text = str(info.value)
    for expected in ("model.method must be one of auto, lora, qlora",
                     "model.max_seq_length must be between 16 and 131072, got 8",
                     "lora.r must be an integer", "lora.dropout must be between 0 and 0.9",
                     "lora.rank is not a field", "training.learning_rate must be a number",
                     "training.use_kernels must be true or false", "training.max_steps must be an integer",
                     "[extras] is not a section"):
        assert expected in text, expected
    assert len(info.value.problems) == 9


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(TuituneError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nname = 1")
    with pytest.raises(TuituneError, match="bad.toml is not valid TOML"):
        load_config(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[lora]\nr = 0\n")
    with pytest.raises(ConfigError, match=r"wrong.toml has 1 invalid field"):
        load_config(wrong)


def test_init_config_prints_a_loadable_commented_config(capsys, tmp_path):
    assert main(["init-config"]) == 0
    out = capsys.readouterr().out
    assert "# LoRA rank (1 to 1024)" in out and "[training]" in out
    path = tmp_path / "c.toml"
    path.write_text(out)
    assert load_config(path) == Config()


def test_cli_reports_config_errors_without_traceback(capsys, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[training]\nbatch_size = 0\nlearning_rate = -1\n")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "training.batch_size must be between 1 and 4096" in err
    assert "training.learning_rate must be between" in err and "Traceback" not in err
    assert main(["train", "--set", "nonsense"]) == 2
    assert "is not SECTION.FIELD=VALUE" in capsys.readouterr().err
