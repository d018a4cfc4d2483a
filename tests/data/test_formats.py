from __future__ import annotations

import pytest

from tests.data.data_samples import ROWS_BY_FORMAT
from tuitune.data.formats import FORMATS, canonical_role, detect_format, resolve_format_name
from tuitune.errors import TuituneError


@pytest.mark.parametrize("fmt", list(ROWS_BY_FORMAT))
def test_detects_each_format_from_columns_and_rows(fmt):
    rows = ROWS_BY_FORMAT[fmt]
    detected, reason = detect_format(list(rows[0]), rows)
    assert detected == fmt
    assert "`" in reason  # names the deciding columns


def test_formats_registry_lists_the_five_formats():
    assert set(FORMATS) == {"alpaca", "sharegpt", "messages", "text", "preference"}
    assert all(FORMATS[f].trainable for f in FORMATS)  # preference pairs train with DPO/ORPO


def test_alpaca_aliases_and_prompt_completion():
    assert detect_format(["instruction", "response"], [{"instruction": "a", "response": "b"}])[0] == "alpaca"
    fmt, reason = detect_format(["prompt", "completion"], [{"prompt": "a", "completion": "b"}])
    assert fmt == "alpaca" and "prompt" in reason


def test_conversation_column_is_told_apart_by_turn_keys():
    sharegpt_in_messages = [{"messages": [{"from": "human", "value": "x"}]}]
    assert detect_format(["messages"], sharegpt_in_messages)[0] == "sharegpt"
    messages_in_conversations = [{"conversations": [{"role": "user", "content": "x"}]}]
    assert detect_format(["conversations"], messages_in_conversations)[0] == "messages"


def test_conversations_stored_as_json_strings_are_detected():
    rows = [{"messages": '[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]'}]
    assert detect_format(["messages"], rows)[0] == "messages"


def test_preference_wins_over_conversation_columns():
    rows = [{"chosen": [{"role": "user", "content": "q"}], "rejected": [{"role": "user", "content": "q"}]}]
    assert detect_format(["chosen", "rejected"], rows)[0] == "preference"


def test_undetectable_reason_lists_columns_and_requirements():
    fmt, reason = detect_format(["question", "answer"], [{"question": "q", "answer": "a"}])
    assert fmt is None
    assert "`question`" in reason and "`answer`" in reason
    for spec in FORMATS.values():
        assert spec.title in reason


def test_undetectable_reason_explains_bad_turn_keys():
    fmt, reason = detect_format(["messages"], [{"messages": [{"speaker": "a", "text": "b"}]}])
    assert fmt is None
    assert "speaker" in reason and "role/content" in reason


def test_instruction_without_output_is_explained():
    fmt, reason = detect_format(["instruction"], [{"instruction": "x"}])
    assert fmt is None and "`output` is missing" in reason


def test_role_aliases():
    assert canonical_role("human") == canonical_role("User") == "user"
    assert canonical_role("gpt") == canonical_role("model") == canonical_role("assistant") == "assistant"
    assert canonical_role("system") == "system"
    assert canonical_role("tool") is None and canonical_role(3) is None


def test_format_override_names():
    assert resolve_format_name("auto") is None and resolve_format_name(None) is None
    assert resolve_format_name("OpenAI") == "messages"
    assert resolve_format_name("dpo") == "preference"
    assert resolve_format_name("ShareGPT") == "sharegpt"
    with pytest.raises(TuituneError, match="Unknown dataset format 'yaml'.*alpaca, sharegpt"):
        resolve_format_name("yaml")
