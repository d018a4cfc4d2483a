from __future__ import annotations

import json

import pytest

from tests.data.data_samples import ALPACA_ROWS, MESSAGES_ROWS, write_json, write_jsonl
from tuitune.data.loading import open_source
from tuitune.data.readers import RecordError
from tuitune.errors import TuituneError


def _collect(progress_calls):
    def progress(done, total):
        progress_calls.append((done, total))
    return progress


def test_jsonl_is_indexed_with_progress_and_random_access(tmp_path):
    rows = [{"text": f"row number {i} " + "x" * 200} for i in range(30000)]  # ~6.5 MB
    path = write_jsonl(tmp_path / "big.jsonl", rows)
    calls = []
    source = open_source(path, progress=_collect(calls))
    assert source.kind == "jsonl" and len(source) == 30000
    total = path.stat().st_size
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert len(calls) > 3 and all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    assert source.record(12345)["text"].startswith("row number 12345 ")
    assert source.record(29999)["text"].startswith("row number 29999 ")


def test_jsonl_skips_blank_lines_and_reports_bad_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\nnot json\n', encoding="utf-8")
    source = open_source(path)
    assert len(source) == 3
    records = list(source.records())
    assert records[1] == (1, {"text": "b"})
    assert isinstance(records[2][1], RecordError)
    with pytest.raises(RecordError, match="not valid JSON"):
        source.record(2)


def test_json_array_is_indexed(tmp_path):
    path = write_json(tmp_path / "d.json", ALPACA_ROWS * 3)
    calls = []
    source = open_source(path, progress=_collect(calls))
    assert source.kind == "json" and len(source) == 6
    assert source.record(1) == ALPACA_ROWS[1]
    assert calls[-1][0] == calls[-1][1] == path.stat().st_size


def test_json_object_holding_one_list(tmp_path):
    path = write_json(tmp_path / "d.json", {"version": 2, "data": MESSAGES_ROWS})
    source = open_source(path)
    assert len(source) == 2 and source.record(0) == MESSAGES_ROWS[0]


def test_json_column_oriented_object(tmp_path):
    path = write_json(tmp_path / "d.json", {"instruction": ["a", "b"], "output": ["c", "d"]})
    source = open_source(path)
    assert source.record(1) == {"instruction": "b", "output": "d"}


def test_json_object_with_several_lists_is_refused(tmp_path):
    path = write_json(tmp_path / "d.json", {"train": ALPACA_ROWS, "test": ALPACA_ROWS})
    with pytest.raises(TuituneError, match="several lists of rows .*`train`, `test`"):
        open_source(path)


def test_jsonl_saved_as_json_is_read_as_lines(tmp_path):
    path = write_jsonl(tmp_path / "d.json", ALPACA_ROWS)
    source = open_source(path)
    assert source.kind == "jsonl" and len(source) == 2


def test_csv_and_tsv(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('instruction,input,output\n"Say ""hi""",,"Hi,\nthere"\nB,c,d\n', encoding="utf-8")
    source = open_source(csv_path)
    assert source.kind == "csv" and len(source) == 2
    assert source.record(0) == {"instruction": 'Say "hi"', "input": "", "output": "Hi,\nthere"}
    assert source.columns() == ["instruction", "input", "output"]
    tsv_path = tmp_path / "d.tsv"
    tsv_path.write_text("text\tid\nhello, world\t1\n", encoding="utf-8")
    assert open_source(tsv_path).record(0) == {"text": "hello, world", "id": "1"}


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(MESSAGES_ROWS * 5), path, row_group_size=3)
    calls = []
    source = open_source(path, progress=_collect(calls))
    assert source.kind == "parquet" and len(source) == 10
    assert source.record(7) == MESSAGES_ROWS[1]
    assert calls[-1] == (path.stat().st_size, path.stat().st_size)


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    from datasets import Dataset, DatasetDict

    Dataset.from_list(ALPACA_ROWS).save_to_disk(str(tmp_path / "single"))
    source = open_source(tmp_path / "single")
    assert source.kind == "arrow" and len(source) == 2 and source.record(1) == ALPACA_ROWS[1]
    DatasetDict({"train": Dataset.from_list(ALPACA_ROWS[:1]),
                 "test": Dataset.from_list(ALPACA_ROWS)}).save_to_disk(str(tmp_path / "dict"))
    assert len(open_source(tmp_path / "dict")) == 1  # the train split
    DatasetDict({"a": Dataset.from_list(ALPACA_ROWS), "b": Dataset.from_list(ALPACA_ROWS)}
                ).save_to_disk(str(tmp_path / "nosplit"))
    with pytest.raises(TuituneError, match=r"several splits \(a, b\) and none is called `train`"):
        open_source(tmp_path / "nosplit")


def test_unknown_suffix_is_sniffed(tmp_path):
    path = write_jsonl(tmp_path / "data.txt", ALPACA_ROWS)
    assert len(open_source(path)) == 2


def test_error_missing_path(tmp_path):
    with pytest.raises(TuituneError, match=r"does not exist\. Pass a data file"):
        open_source(tmp_path / "nope.jsonl")


def test_error_empty_file(tmp_path):
    (tmp_path / "e.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(TuituneError, match="is empty: it holds no rows"):
        open_source(tmp_path / "e.jsonl")


def test_error_not_utf8(tmp_path):
    path = tmp_path / "b.json"
    path.write_bytes(b'[{"text": "\xff\xfe"}]')
    with pytest.raises(TuituneError, match="is not UTF-8 text"):
        open_source(path)


def test_error_invalid_json(tmp_path):
    path = tmp_path / "b.json"
    path.write_text('[{"text": "a"}, {"text": ]', encoding="utf-8")
    with pytest.raises(TuituneError, match="b.json is not valid JSON"):
        open_source(path)


def test_error_first_jsonl_line_invalid(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text("hello\nworld\n", encoding="utf-8")
    with pytest.raises(TuituneError, match="is not JSON Lines: its first row is not valid JSON"):
        open_source(path)


def test_error_unreadable_parquet(tmp_path):
    path = tmp_path / "b.parquet"
    path.write_text("not parquet at all", encoding="utf-8")
    with pytest.raises(TuituneError, match="is not a readable Parquet file"):
        open_source(path)


def test_error_unknown_binary(tmp_path):
    path = tmp_path / "b.bin"
    path.write_bytes(bytes(range(1, 200)))
    with pytest.raises(TuituneError, match="Cannot tell what kind of file"):
        open_source(path)


def test_error_plain_folder_names_data_files(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", ALPACA_ROWS)
    with pytest.raises(TuituneError, match="not a `datasets` save_to_disk folder.*train.jsonl"):
        open_source(tmp_path)


def test_json_with_top_level_scalar_is_refused(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps("just a string"), encoding="utf-8")
    with pytest.raises(TuituneError, match="not a JSON array or object"):
        open_source(path)
