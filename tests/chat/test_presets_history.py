"""Presets, settings checks and the conversation history (pure Python, no model)."""

from __future__ import annotations

import pytest

from tuitune.chat import PRESETS, Conversation, preset
from tuitune.chat.presets import parse_setting
from tuitune.errors import TuituneError


def test_the_three_guide_presets_and_greedy_exist_and_differ():
    assert {"factual", "balanced", "creative", "greedy"} <= set(PRESETS)
    temps = [PRESETS[n].temperature for n in ("greedy", "factual", "balanced", "creative")]
    assert temps == sorted(temps) and len(set(temps)) == 4
    assert PRESETS["greedy"].greedy and not PRESETS["creative"].greedy


def test_a_preset_is_a_copy_that_can_be_edited():
    edited = preset("factual", temperature=0.5, max_new_tokens=12)
    assert (edited.temperature, edited.max_new_tokens) == (0.5, 12)
    assert PRESETS["factual"].temperature == 0.2  # the named preset is untouched


def test_bad_settings_name_every_field():
    with pytest.raises(TuituneError) as info:
        preset("balanced", temperature=3.0, top_p=0.0)
    assert "temperature = 3.0" in str(info.value) and "top_p = 0.0" in str(info.value)
    with pytest.raises(TuituneError, match="Unknown generation preset 'wild'.*factual"):
        preset("wild")


def test_parse_setting_accepts_aliases_and_refuses_garbage():
    assert parse_setting("temp", "0.3") == ("temperature", 0.3)
    assert parse_setting("max", "64") == ("max_new_tokens", 64)
    with pytest.raises(TuituneError, match="top_k must be a whole number"):
        parse_setting("top_k", "1.5")
    with pytest.raises(TuituneError, match="Unknown setting 'beam'"):
        parse_setting("beam", "2")


def test_conversation_history_clear_regenerate_and_transcript():
    chat = Conversation(system_prompt="Be brief.")
    assert chat.ask("Hi?") == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    with pytest.raises(TuituneError, match="no answer yet"):
        chat.ask("again")
    chat.answer("Hello.", {"new_tokens": 2})
    assert chat.last_answer() == "Hello."
    assert chat.regenerate()[-1] == {"role": "user", "content": "Hi?"}  # the answer is dropped
    chat.answer("Hey.")
    assert chat.transcript() == "system: Be brief.\n\nuser: Hi?\n\nassistant: Hey."
    chat.clear()
    assert chat.messages() == [{"role": "system", "content": "Be brief."}]
    with pytest.raises(TuituneError, match="Nothing to regenerate"):
        chat.regenerate()
    with pytest.raises(TuituneError, match="empty"):
        chat.ask("   ")
