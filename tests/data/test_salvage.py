"""Broken JSON files: where they break, how many complete records precede the break, and salvage."""

from __future__ import annotations

import json

import pytest

from tests.data.data_samples import SHAREGPT_ROWS
from tuitune.data import json_scan, load_rows
from tuitune.data.loading import open_source
from tuitune.data.readers import BrokenFileError, RecordError
from tuitune.errors import TuituneError


def sharegpt(count: int) -> list[dict]:
    return [{"id": n, "conversations": [{"from": "human", "value": f"Question {n}? é 中文"},
                                        {"from": "gpt", "value": f"Answer {n}."}]}
            for n in range(count)]


def cut_json(tmp_path, rows, keep: int, name="dump.json") -> tuple:
    """`rows` as a pretty-printed JSON array cut off inside record `keep` + 1."""
    text = json.dumps(rows, indent=2, ensure_ascii=False).encode("utf-8")
    whole = [json.dumps(r, indent=2, ensure_ascii=False) for r in rows]
    start = text.index(b'"id": ' + str(keep).encode()) - 4  # inside the next record
    path = tmp_path / name
    path.write_bytes(text[:start + 20])
    return path, whole


def test_cut_off_array_says_where_and_how_many_records_are_complete(tmp_path):
    path, _ = cut_json(tmp_path, sharegpt(10), keep=6)
    with pytest.raises(BrokenFileError) as info:
        open_source(path)
    error = info.value
    assert error.records == 6 and error.cut_off
    message = str(error)
    assert "dump.json is cut off: it ends in the middle of record 7" in message
    assert f"byte {error.offset:,} (line {error.line:,}, column 3)" in message
    assert "The 6 records before the break are complete" in message
    assert "--salvage" in message and "Salvage button on the Dataset screen" in message
    # The line is where record 7 starts in the file.
    assert path.read_bytes()[:error.offset].count(b"\n") + 1 == error.line
    assert path.read_bytes()[error.offset:error.offset + 1] == b"{"


def test_salvage_uses_the_complete_records_without_a_second_scan(tmp_path, monkeypatch):
    rows = sharegpt(10)
    path, _ = cut_json(tmp_path, rows, keep=6)
    with pytest.raises(BrokenFileError) as info:
        load_rows(path)
    calls = []
    real = json_scan.scan_array
    monkeypatch.setattr("tuitune.data.readers.scan_array",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    loaded = load_rows(info.value.salvaged())  # what the Dataset screen's button does
    assert calls == []
    assert loaded.format == "sharegpt" and loaded.row_count == 6 and loaded.usable_rows == 6
    assert loaded.rows[5].messages[0]["content"] == "Question 5? é 中文"
    assert loaded.notes and "salvaged 6 complete record(s)" in loaded.notes[0]

    again = load_rows(path, salvage=True)  # what --salvage does
    assert again.row_count == 6 and again.notes == loaded.notes
    assert [r.messages for r in again.rows] == [r.messages for r in loaded.rows]


def test_array_missing_only_its_closing_bracket_keeps_every_record(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(SHAREGPT_ROWS)[:-1] + ",\n  ", encoding="utf-8")
    with pytest.raises(BrokenFileError, match=r"cut off after record 2 .*closing `\]` is missing"):
        open_source(path)
    assert len(load_rows(path, salvage=True).rows) == 2


def test_syntax_error_mid_file_names_the_place_and_skips_the_rest_on_salvage(tmp_path):
    path = tmp_path / "d.json"
    good = ",".join(json.dumps(r) for r in SHAREGPT_ROWS)
    path.write_text(f"[{good},\n{{\"conversations\": oops}},\n{good}]", encoding="utf-8")
    with pytest.raises(BrokenFileError) as info:
        open_source(path)
    assert not info.value.cut_off and info.value.line == 2
    assert "is not valid JSON at byte" in str(info.value) and "Expecting value" in str(info.value)
    salvaged = load_rows(path, salvage=True)
    assert salvaged.row_count == 2 and "bytes from there on are skipped" in salvaged.notes[0]


def test_object_holding_a_cut_off_array_is_salvaged(tmp_path):
    path = tmp_path / "d.json"
    text = json.dumps({"version": 3, "data": sharegpt(4)})
    path.write_text(text[: text.index('"id": 3')], encoding="utf-8")
    with pytest.raises(BrokenFileError, match="The 3 records before the break are complete"):
        open_source(path)
    assert load_rows(path, salvage=True).row_count == 3


def test_nothing_complete_means_nothing_to_salvage(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"conversations": [{"from": "human", "val', encoding="utf-8")
    for salvage in (False, True):
        with pytest.raises(BrokenFileError, match="nothing to salvage"):
            load_rows(path, salvage=salvage)


def test_jsonl_with_a_cut_off_last_line_keeps_the_rows_before_it(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps(r) for r in sharegpt(5)]
    path.write_text("\n".join(lines[:4]) + "\n" + lines[4][:30], encoding="utf-8")
    loaded = load_rows(path)
    assert loaded.row_count == 5 and loaded.usable_rows == 4
    (problem,) = loaded.problems
    assert problem.row == 5 and "cut off: the file ends in the middle of this row" in problem.message
    with pytest.raises(RecordError, match="cut off"):
        loaded.raw_row(5)


def test_records_across_chunk_boundaries(tmp_path, monkeypatch):
    """The streaming scan reads small chunks here: every record spans several of them."""
    monkeypatch.setattr(json_scan, "CHUNK", 7)
    rows = sharegpt(40) + [{"n": 12345678901234567890, "f": -1.5e-7, "t": True, "z": None}]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    source = open_source(path)
    assert [rec for _, rec in source.records()] == rows
    assert source.record(40) == rows[40]
    path.write_text(json.dumps(rows, ensure_ascii=False)[:-60], encoding="utf-8")
    with pytest.raises(BrokenFileError) as info:
        open_source(path)
    assert info.value.records == 40 and info.value.cut_off


def test_invalid_utf8_in_a_json_array_names_the_offset(tmp_path):
    path = tmp_path / "d.json"
    path.write_bytes(b'[{"text": "ok"}, {"text": "\xff"}]')
    with pytest.raises(TuituneError, match="not UTF-8 text .*offset 27"):
        open_source(path)


def test_cli_inspect_and_train_flags(tmp_path, capsys, default_tokenizer):
    from tuitune.cli.main import main

    path, _ = cut_json(tmp_path, sharegpt(8), keep=5)
    assert main(["data", "inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "cut off" in err and "Traceback" not in err and "--salvage" in err
    assert main(["data", "inspect", str(path), "--salvage"]) == 0
    out = capsys.readouterr().out
    assert "rows:     5 (5 usable, 0 dropped)" in out
    assert "note:     salvaged 5 complete record(s)" in out


def test_train_salvage_flag_sets_the_config():
    from argparse import ArgumentParser

    from tuitune.cli import train

    parser = ArgumentParser()
    train.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--data", "x.json", "--salvage"])
    assert train.resolve_config(args).data.salvage is True
    args = parser.parse_args(["train", "--data", "x.json"])
    assert train.resolve_config(args).data.salvage is False
