from __future__ import annotations

import json
import time

import pytest

from tests.data.data_samples import ROWS_BY_FORMAT, write_json, write_jsonl
from tuitune.data import load_rows
from tuitune.data.problems import Problem
from tuitune.errors import TuituneError


def _write(kind: str, folder, rows):
    if kind == "json":
        return write_json(folder / "d.json", rows)
    if kind == "jsonl":
        return write_jsonl(folder / "d.jsonl", rows)
    if kind == "csv":
        import csv

        path = folder / "d.csv"
        columns = list(dict.fromkeys(k for r in rows for k in r))
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            for r in rows:  # lists of turns become JSON text in a cell
                writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
        return path
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = folder / "d.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    if kind == "disk":
        from datasets import Dataset

        Dataset.from_list(rows).save_to_disk(str(folder / "saved"))
        return folder / "saved"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["json", "jsonl", "csv", "parquet", "disk"])
@pytest.mark.parametrize("fmt", list(ROWS_BY_FORMAT))
def test_every_format_in_every_file_type(tmp_path, fmt, kind):
    rows = ROWS_BY_FORMAT[fmt]
    loaded = load_rows(_write(kind, tmp_path, rows))
    assert loaded.format == fmt, loaded.format_reason
    assert loaded.row_count == 2 and loaded.usable_rows == 2
    assert loaded.problems == []
    assert [r.number for r in loaded.rows] == [1, 2]
    first = loaded.rows[0]
    if fmt == "text":
        assert first.text == rows[0]["text"]
    elif fmt == "preference":
        assert first.messages == [{"role": "user", "content": "Say hi."}]
        assert first.chosen == [{"role": "assistant", "content": "Hi!"}]
        assert first.rejected == [{"role": "assistant", "content": "No."}]
    else:
        assert first.messages[-1]["role"] == "assistant"
        assert all(set(m) == {"role", "content"} for m in first.messages)


def test_normalised_forms(tmp_path):
    alpaca = load_rows(write_jsonl(tmp_path / "a.jsonl", ROWS_BY_FORMAT["alpaca"]))
    assert alpaca.rows[1].messages == [{"role": "user", "content": "Add the numbers.\n\n2 and 3"},
                                       {"role": "assistant", "content": "5"}]
    assert alpaca.rows[1].instruction == ("Add the numbers.", "2 and 3")
    share = load_rows(write_jsonl(tmp_path / "s.jsonl", ROWS_BY_FORMAT["sharegpt"]))
    assert share.rows[1].messages == [{"role": "system", "content": "Be terse."},
                                      {"role": "user", "content": "2+2?"},
                                      {"role": "assistant", "content": "4"}]


def test_progress_reaches_total_once_and_grows(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS_BY_FORMAT["messages"] * 500)
    calls = []
    load_rows(path, progress=lambda done, total: calls.append((done, total)))
    total = path.stat().st_size
    assert calls[-1] == (total, total)
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    assert {t for _, t in calls} == {total}


def test_problems_have_row_numbers(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},  # 1 ok
        {"messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "  "}]},  # 2 empty
        {"messages": [{"role": "user", "content": "q3"}, {"role": "tool", "content": "x"}]},  # 3 role
        {"messages": [{"role": "user", "content": "q4"}]},  # 4 no assistant
        {"messages": [{"role": "user", "content": "q5"}, {"role": "assistant", "content": "a5"},
                      {"role": "user", "content": "dangling"}]},  # 5 trailing user turn
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},  # 6 dup of 1
        {"messages": [{"role": "user"}, {"role": "assistant", "content": "a7"}]},  # 7 missing content
        {"other": 1},  # 8 missing field
        {"messages": "not a list"},  # 9 bad type
    ]
    loaded = load_rows(write_jsonl(tmp_path / "m.jsonl", rows), format="messages")
    kinds = {(p.row, p.kind) for p in loaded.problems}
    assert kinds == {(2, "empty"), (3, "unknown_role"), (4, "no_assistant"),
                     (5, "not_ending_with_assistant"), (6, "duplicate"), (7, "missing_field"),
                     (8, "missing_field"), (9, "bad_type")}
    assert [r.number for r in loaded.rows] == [1, 5]
    assert loaded.rows[1].messages[-1] == {"role": "assistant", "content": "a5"}
    by_row = {p.row: p for p in loaded.problems}
    assert "'tool'" in by_row[3].message and "known roles" in by_row[3].message
    assert by_row[6].message == "duplicate of row 1"
    assert by_row[7].message == "turn 1 of `messages` has no `content` (keys: role)"
    assert isinstance(by_row[2], Problem) and tuple(by_row[2])[:2] == (2, "empty")
    assert str(by_row[2]) == "row 2: turn 2 (assistant) is empty"


def test_alpaca_missing_and_empty_fields(tmp_path):
    rows = [{"instruction": "do", "output": "done"}, {"instruction": "do it"},
            {"instruction": "", "output": "x"}, {"instruction": 5, "output": 6}]
    loaded = load_rows(write_jsonl(tmp_path / "a.jsonl", rows))
    assert [(p.row, p.kind, p.message) for p in loaded.problems] == [
        (2, "missing_field", "missing field `output`"), (3, "empty", "`instruction` is empty")]
    assert loaded.rows[1].messages[1]["content"] == "6"  # numbers are read as text


def test_text_problems(tmp_path):
    rows = [{"text": "fine"}, {"text": ""}, {"text": None}, {"text": ["a"]}]
    loaded = load_rows(write_jsonl(tmp_path / "t.jsonl", rows))
    assert [(p.row, p.kind) for p in loaded.problems] == [(2, "empty"), (3, "missing_field"),
                                                          (4, "bad_type")]


def test_preference_pairs_explicit_and_implicit_prompt(tmp_path):
    rows = [
        {"chosen": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello!"}],
         "rejected": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Go away."}]},
        {"prompt": "Same?", "chosen": "yes", "rejected": "yes"},
        {"prompt": "Missing rejected", "chosen": "x"},
    ]
    loaded = load_rows(write_jsonl(tmp_path / "p.jsonl", rows))
    assert loaded.format == "preference"
    row = loaded.rows[0]
    assert row.messages == [{"role": "user", "content": "Hi?"}]
    assert row.chosen == [{"role": "assistant", "content": "Hello!"}]
    assert row.rejected == [{"role": "assistant", "content": "Go away."}]
    assert [(p.row, p.kind) for p in loaded.problems] == [(2, "identical_pair"), (3, "missing_field")]


def test_sharegpt_aliases_and_system_column(tmp_path):
    rows = [{"system": "Be kind.", "conversations": [{"from": "Human", "value": "a"},
                                                      {"from": "bot", "value": "b"}]}]
    loaded = load_rows(write_jsonl(tmp_path / "s.jsonl", rows))
    assert loaded.rows[0].messages == [{"role": "system", "content": "Be kind."},
                                       {"role": "user", "content": "a"},
                                       {"role": "assistant", "content": "b"}]


def test_forced_format_and_reason(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "instruction": "b", "output": "c"}])
    assert load_rows(path).format == "alpaca"
    forced = load_rows(path, format="text")
    assert forced.format == "text" and forced.format_reason.startswith("set explicitly")
    wrong = load_rows(write_jsonl(tmp_path / "t.jsonl", [{"text": "a"}]), format="alpaca")
    assert wrong.usable_rows == 0
    assert [p.kind for p in wrong.problems] == ["missing_field", "missing_field"]


def test_unknown_format_error_names_columns(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(TuituneError) as info:
        load_rows(path)
    message = str(info.value)
    assert "Cannot tell the format of" in message and "q.jsonl" in message
    assert "`question`, `answer`" in message and "--format" in message


def test_empty_array_and_header_only_csv(tmp_path):
    write_json(tmp_path / "e.json", [])
    with pytest.raises(TuituneError, match="holds no rows"):
        load_rows(tmp_path / "e.json")
    (tmp_path / "h.csv").write_text("instruction,output\n", encoding="utf-8")
    with pytest.raises(TuituneError, match="holds no rows"):
        load_rows(tmp_path / "h.csv")


def test_hub_name_offline_fails_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(TuituneError) as info:
        load_rows("someone/some-dataset")
    assert time.monotonic() - start < 2
    message = str(info.value)
    assert "'someone/some-dataset' looks like a hub dataset name" in message
    assert "HF_HUB_OFFLINE is set" in message and "pass the local path" in message


def test_hub_name_unreachable_fails_fast(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.monotonic()
    with pytest.raises(TuituneError, match="hub is not reachable .*127.0.0.1 cannot be reached"):
        load_rows("someone/some-dataset")
    assert time.monotonic() - start < 4


def test_progress_callback_can_cancel_a_load(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS_BY_FORMAT["text"] * 2000)

    class Cancelled(Exception):
        pass

    def progress(done, total):
        if done > total // 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        load_rows(path, progress=progress)
