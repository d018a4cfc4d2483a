from __future__ import annotations

import json
import runpy

from tuitune.data import load_rows, sample_dataset_path, tokenize_rows


def _generator() -> dict:
    return runpy.run_path(str(sample_dataset_path().with_name("make_sample.py")), run_name="sample")


def test_sample_file_is_what_the_generator_writes():
    gen = _generator()
    lines = sample_dataset_path().read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == gen["build"]()


def test_sample_teaches_one_visible_habit(tokenizer):
    sign_off = _generator()["SIGN_OFF"]
    loaded = load_rows(sample_dataset_path())
    assert loaded.format == "messages" and loaded.problems == []
    assert 250 <= loaded.usable_rows <= 400
    replies = [m["content"] for row in loaded.rows for m in row.messages if m["role"] == "assistant"]
    assert all(r.startswith("Ahoy! ") and r.endswith(" " + sign_off) for r in replies)
    assert sum(len(row.messages) > 2 for row in loaded.rows) >= 10  # some multi-turn rows
    tokenized = tokenize_rows(loaded, tokenizer, max_seq_length=128)
    assert tokenized.problems == [] and max(len(ids) for ids in tokenized.input_ids) < 128


def test_sample_answers_are_correct_arithmetic():
    loaded = load_rows(sample_dataset_path())
    checked = 0
    for row in loaded.rows:
        question, reply = row.messages[0]["content"], row.messages[1]["content"]
        for word, op in (("plus", int.__add__), ("minus", int.__sub__), ("times", int.__mul__)):
            if question.startswith("What is ") and f" {word} " in question:
                a, b = question[len("What is "):-1].split(f" {word} ")
                assert f" be {op(int(a), int(b))}." in reply, (question, reply)
                checked += 1
    assert checked >= 100
