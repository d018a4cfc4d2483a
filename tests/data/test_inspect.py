from __future__ import annotations

import argparse

import pytest

from tests.data.data_samples import write_jsonl
from tuitune.cli import data as data_cli
from tuitune.data import inspect_data, load_rows
from tuitune.data.inspection import percentile, recommend_max_seq_length
from tuitune.errors import TuituneError


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tuitune")
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def test_percentiles_and_recommendation():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 95) == 95
    assert percentile(values, 99) == 99 and percentile([7], 99) == 7
    assert recommend_max_seq_length(99, None) == 128
    assert recommend_max_seq_length(10, None) == 64
    assert recommend_max_seq_length(128, None) == 128
    assert recommend_max_seq_length(5000, 2048) == 2048
    assert recommend_max_seq_length(0, 2048) is None


def test_inspect_report_numbers(tmp_path, tokenizer):
    rows = [chat(f"Question {i}?", "word " * i) for i in range(1, 41)]
    rows.append({"messages": [{"role": "user", "content": "no reply"}]})
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    report = inspect_data(path, tokenizer=tokenizer, max_seq_length=60)
    assert report.format == "messages" and report.row_count == 41 and report.usable_rows == 40
    assert len(report.lengths) == 40
    ordered = sorted(report.lengths)
    assert report.max_tokens == ordered[-1] and report.p99_tokens == ordered[-1]
    assert report.p95_tokens == ordered[37]
    assert report.median_tokens == (ordered[19] + ordered[20]) / 2
    assert report.mean_tokens == pytest.approx(sum(ordered) / 40)
    assert report.recommended_max_seq_length % 64 == 0
    assert report.recommended_max_seq_length >= report.p99_tokens
    too_long = [p for p in report.problems if p.kind == "too_long"]
    assert too_long and all(report.lengths[p.row - 1] > 60 for p in too_long)
    assert len(too_long) == sum(1 for n in report.lengths if n > 60)
    assert (41, "no_assistant") in {(p.row, p.kind) for p in report.problems}
    assert report.samples[0].startswith("<|im_start|>system")


def test_inspect_preference_pairs(tmp_path, tokenizer):
    rows = [{"prompt": "Say hi.", "chosen": "Hi there, friend!", "rejected": "No."}]
    report = inspect_data(write_jsonl(tmp_path / "p.jsonl", rows), tokenizer=tokenizer)
    assert report.format == "preference" and report.trainable and report.usable
    def count(reply: str) -> int:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": reply}], tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    assert count("Hi there, friend!") > count("No.")
    assert report.lengths == [count("Hi there, friend!")]  # the longer side of the pair
    assert "[chosen]" in report.samples[0] and "[rejected]" in report.samples[0]


def test_inspect_accepts_loaded_data(tmp_path, tokenizer):
    loaded = load_rows(write_jsonl(tmp_path / "t.jsonl", [{"text": "hello"}, {"text": ""}]))
    report = inspect_data(loaded, tokenizer=tokenizer)
    assert report.usable_rows == 1 and report.lengths == [len(tokenizer("hello")["input_ids"]) + 1]


def test_cli_prints_the_report_and_exits_0(tmp_path, capsys, default_tokenizer):
    rows = [chat(f"Q{i}", f"A{i}") for i in range(5)] + [chat("Q0", "A0"), {"messages": []}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert run_cli(["data", "inspect", str(path), "--max-seq-length", "64"]) == 0
    out = capsys.readouterr().out
    assert "format:   messages (OpenAI messages)" in out
    assert "rows:     7 (5 usable, 2 dropped)" in out
    for label in ("mean", "median", "p95", "p99", "max"):
        assert f" {label} " in out
    assert "recommended max sequence length: 64" in out
    assert "row 6: duplicate of row 1" in out and "row 7: `messages` has no turns" in out
    assert "duplicate rows: 1 in 1 row(s) (rows dropped)" in out


def test_cli_groups_and_caps_long_problem_lists(tmp_path, capsys, default_tokenizer):
    rows = [chat("q", "a")] + [{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(60)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert run_cli(["data", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "no assistant reply: 60 in 60 row(s) (rows dropped)" in out
    assert "row 21: " in out and "row 22: " not in out
    assert "... and 40 more (rows 22, 23," in out
    assert run_cli(["data", "inspect", str(path), "--all-problems"]) == 0
    assert "row 61: " in capsys.readouterr().out


def test_cli_exits_1_when_nothing_is_usable(tmp_path, capsys, default_tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": ""}, {"text": "   "}])
    assert run_cli(["data", "inspect", str(path)]) == 1
    captured = capsys.readouterr()
    assert "rows:     2 (0 usable, 2 dropped)" in captured.out
    assert "no usable rows" in captured.err


def test_cli_format_override_and_errors(tmp_path, capsys, default_tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(TuituneError, match="Columns seen: `question`, `answer`"):
        run_cli(["data", "inspect", str(path)])
    with pytest.raises(TuituneError, match="Unknown dataset format 'nope'"):
        run_cli(["data", "inspect", str(path), "--format", "nope"])
    text_path = write_jsonl(tmp_path / "t.jsonl", [{"text": "hi", "instruction": "x", "output": "y"}])
    assert run_cli(["data", "inspect", str(text_path), "--format", "text"]) == 0
    assert "format:   text (plain text) — set explicitly" in capsys.readouterr().out


def test_cli_through_main_with_the_real_default_tokenizer(capsys):
    from tuitune.cli.main import main
    from tuitune.data import sample_dataset_path

    assert main(["data", "inspect", str(sample_dataset_path())]) == 0
    out = capsys.readouterr().out
    assert "problems: none" in out and "recommended max sequence length: 128" in out
    assert main(["data", "inspect", "/nonexistent/file.jsonl"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_model_context_comes_from_the_tokenizer_or_its_config(tmp_path, tokenizer):
    import copy
    import json as _json

    from tuitune.data.inspection import model_context

    tok = copy.deepcopy(tokenizer)
    tok.model_max_length = 2048
    assert model_context(tok) == 2048
    tok.model_max_length = int(1e30)
    tok.name_or_path = str(tmp_path)
    assert model_context(tok) is None
    (tmp_path / "config.json").write_text(_json.dumps({"max_position_embeddings": 8192}))
    assert model_context(tok) == 8192


def test_rows_over_the_model_context_are_reported(tmp_path, tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.model_max_length = 40
    rows = [chat("short", "ok"), chat("long " * 60, "ok")]
    report = inspect_data(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer=tok)
    assert [(p.row, p.kind) for p in report.problems] == [(2, "too_long")]
    assert "over the model's context 40" in report.problems[0].message
    assert report.recommended_max_seq_length == 40  # capped by the context
