"""Presets are valid config data and write exactly their fields."""

from __future__ import annotations

import pytest

from tuitune.config import Config, apply_overrides
from tuitune.presets import PRESETS


@pytest.mark.parametrize("key", sorted(PRESETS))
def test_every_preset_is_a_valid_config_and_applies_all_its_fields(key):
    preset = PRESETS[key]
    validated = apply_overrides(Config(), preset.values)  # raises, naming the field, on a bad value
    config = Config()
    config.data.path = "mine.jsonl"
    preset.apply(config)
    for dotted in preset.values:
        assert config.get(dotted) == validated.get(dotted), dotted
    assert config.data.path == "mine.jsonl"  # a field the preset does not name keeps its value
