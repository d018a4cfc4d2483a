"""Column mapping: data whose fields have other names trains through `data.columns` / `--map`."""

from __future__ import annotations

import tomllib

import pytest

from tests.data.data_samples import write_jsonl
from tuitune.config import ConfigError, config_from_dict, to_toml
from tuitune.data import load_rows
from tuitune.data.columns import map_record, parse_mapping, suggest_mapping
from tuitune.data.loading import UnknownFormatError
from tuitune.errors import TuituneError

QA = [{"question": "Capital of France?", "answer": "Paris."},
      {"question": "Two plus two?", "answer": "Four."}]
PROMPT_RESPONSE = [{"prompt": "Say hi.", "response": "Hi!"}, {"prompt": "Say bye.", "response": "Bye!"}]
INPUT_TARGET = [{"input": "Translate: chat", "target": "cat"}, {"input": "Translate: chien", "target": "dog"}]
DIALOG = [{"dialog": [{"speaker": "customer", "text": "My order is late."},
                      {"speaker": "agent", "text": "Sorry, it ships today."}]},
          {"dialog": [{"speaker": "customer", "text": "Refund?"},
                      {"speaker": "agent", "text": "Done."}]}]


@pytest.mark.parametrize("rows, expected", [
    (QA, "instruction=question,output=answer"),
    (PROMPT_RESPONSE, "instruction=prompt,output=response"),
    (INPUT_TARGET, "instruction=input,output=target"),
    (DIALOG, "messages=dialog,role=speaker,content=text"),
])
def test_detection_failure_shows_the_columns_and_suggests_a_mapping(tmp_path, rows, expected):
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(UnknownFormatError) as info:
        load_rows(path)
    error = info.value
    assert error.columns == list(rows[0])
    assert error.suggestion is not None and error.suggestion.text() == expected
    message = str(error)
    assert "Columns seen: " + ", ".join(f"`{c}`" for c in rows[0]) in message
    assert f"--map {expected}" in message and "data.columns" in message


def test_question_answer_trains_as_alpaca_through_the_mapping(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", QA)
    loaded = load_rows(path, columns="instruction=question,output=answer")
    assert loaded.format == "alpaca" and loaded.usable_rows == 2 and not loaded.problems
    assert "with the column mapping instruction=question,output=answer" in loaded.format_reason
    assert loaded.rows[0].messages == [{"role": "user", "content": "Capital of France?"},
                                       {"role": "assistant", "content": "Paris."}]
    assert loaded.raw_row(1) == QA[0]  # previews keep the data's own names


def test_input_target_does_not_read_input_twice(tmp_path):
    loaded = load_rows(write_jsonl(tmp_path / "d.jsonl", INPUT_TARGET),
                       columns={"instruction": "input", "output": "target"})
    assert loaded.rows[1].messages[0] == {"role": "user", "content": "Translate: chien"}


def test_dialog_with_speakers_and_role_values(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", DIALOG)
    mapping = "messages=dialog,role=speaker,content=text,user=customer,assistant=agent"
    loaded = load_rows(path, columns=mapping)
    assert loaded.format == "messages" and loaded.usable_rows == 2
    assert loaded.rows[0].messages == [{"role": "user", "content": "My order is late."},
                                       {"role": "assistant", "content": "Sorry, it ships today."}]
    # Without the role values, "customer" and "agent" are unknown roles: reported per row.
    partial = load_rows(path, columns="messages=dialog,role=speaker,content=text")
    assert partial.usable_rows == 0 and "role 'customer'" in partial.problems[0].message


def test_a_mapping_naming_a_missing_column_says_which(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", QA)
    with pytest.raises(TuituneError, match=r"reads `output` from column `reply`.*columns seen: "
                                           r"`question`, `answer`"):
        load_rows(path, columns="instruction=question,output=reply")


@pytest.mark.parametrize("text, fragment", [
    ("instruction", "is not name=column"),
    ("answer=question", "maps `answer`, which is not a name tuitune reads"),
    ("output=", "names no column"),
    ("output=a,output=b", "maps `output` a second time"),
    ("instruction=q,output=q", "column `q` is mapped to two names"),
    ("user=bot,assistant=BOT", "must differ"),
])
def test_bad_mappings_name_the_item(text, fragment):
    with pytest.raises(TuituneError, match=fragment):
        parse_mapping(text, "--map")


def test_config_field_accepts_text_or_a_table_and_round_trips():
    config = config_from_dict({"data": {"columns": {"instruction": "question", "output": "answer"}}})
    assert config.data.columns == "instruction=question,output=answer"
    assert config_from_dict(tomllib.loads(to_toml(config))) == config
    with pytest.raises(ConfigError, match=r"data\.columns: 'x=y' maps `x`"):
        config_from_dict({"data": {"columns": "x=y"}})
    with pytest.raises(ConfigError, match="data.columns must be text"):
        config_from_dict({"data": {"columns": 3}})


def test_map_record_leaves_other_fields_and_non_dicts():
    mapping = parse_mapping("instruction=q,output=a")
    assert map_record({"q": 1, "a": 2, "id": 7}, mapping) == {"instruction": 1, "output": 2, "id": 7}
    assert map_record([1, 2], mapping) == [1, 2]
    assert map_record({"id": 1}, mapping) == {"id": 1}


def test_no_suggestion_for_columns_that_mean_nothing():
    assert suggest_mapping(["colour", "size"], [{"colour": "red", "size": 3}]) is None
    assert suggest_mapping(["body"], [{"body": "Once upon a time."}]).text() == "text=body"


def test_cli_inspect_with_map(tmp_path, capsys, default_tokenizer):
    from tuitune.cli.main import main

    path = write_jsonl(tmp_path / "qa.jsonl", QA)
    assert main(["data", "inspect", str(path)]) == 2
    assert "--map instruction=question,output=answer" in capsys.readouterr().err
    assert main(["data", "inspect", str(path), "--map", "instruction=question,output=answer"]) == 0
    out = capsys.readouterr().out
    assert "format:   alpaca" in out and "rows:     2 (2 usable, 0 dropped)" in out
    assert main(["data", "inspect", str(path), "--map", "nonsense"]) == 2
    assert "--map: 'nonsense' is not name=column" in capsys.readouterr().err
