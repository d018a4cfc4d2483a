"""Big data: a large file keeps an index, not its rows; token statistics come from a sample; the
trainer's data is an Arrow file on disk, memory-mapped. (The 1 GB numbers are in NOTES.md.)"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.data.data_samples import write_jsonl
from tuitune.data import build_training_dataset, inspect_data, load_rows, loading
from tuitune.data.loading import LazyRows


def chat_rows(count: int, extra: str = "") -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"Question {n}?{extra}"},
                          {"role": "assistant", "content": f"Answer {n}. {extra}"}]}
            for n in range(count)]


def test_a_large_source_keeps_row_numbers_and_reads_rows_on_demand(tmp_path, monkeypatch):
    rows = chat_rows(300)
    rows[10] = {"messages": "not turns"}
    rows[20] = rows[5]  # a duplicate
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    kept = load_rows(path)
    monkeypatch.setattr(loading, "KEEP_ROWS_BYTES", 0)
    lazy = load_rows(path)
    assert isinstance(lazy.rows, LazyRows) and isinstance(kept.rows, list)
    assert lazy.usable_rows == kept.usable_rows == 298
    assert lazy.problems == kept.problems
    assert list(lazy.rows) == kept.rows
    assert lazy.rows[-1] == kept.rows[-1] and lazy.rows[100] == kept.rows[100]
    assert list(lazy.rows[::50]) == kept.rows[::50]  # a sparse sample jumps to its rows
    assert list(lazy.rows[:7]) == kept.rows[:7]
    assert lazy.usable_row(11) is None and kept.usable_row(11) is None
    assert lazy.usable_row(12) == kept.usable_row(12) == kept.rows[10]


def _peak_rss_mb(path, keep_bytes: int) -> int:
    code = textwrap.dedent(f"""
        from tuitune.data import loading
        loading.KEEP_ROWS_BYTES = {keep_bytes}
        data = loading.load_rows({str(path)!r})
        assert data.usable_rows > 0
        # VmHWM: this process's peak RSS (ru_maxrss would include the parent's, forked before exec)
        status = open("/proc/self/status").read()
        print(int(status.split("VmHWM:")[1].split()[0]) // 1024)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


@pytest.mark.timeout(180)
def test_memory_of_a_large_load_does_not_grow_with_the_file(tmp_path):
    filler = " The quick brown fox jumps over the lazy dog." * 12
    small = write_jsonl(tmp_path / "small.jsonl", chat_rows(3_000, filler))
    big = write_jsonl(tmp_path / "big.jsonl", chat_rows(40_000, filler))  # ~45 MB
    lazy_small, lazy_big = _peak_rss_mb(small, 0), _peak_rss_mb(big, 0)
    kept_big = _peak_rss_mb(big, 1 << 40)
    print(f"peak RSS: small {lazy_small} MB, big {lazy_big} MB; big with every row kept {kept_big} MB")
    assert kept_big - lazy_big > 40, "the check cannot tell kept rows from an index"
    assert lazy_big - lazy_small < 20


def test_inspect_measures_tokens_on_an_even_sample_and_says_so(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", chat_rows(100))
    report = inspect_data(path, tokenizer=tokenizer, sample_rows=25)
    assert report.measured_rows == 25 and len(report.lengths) == 25
    assert report.usable_rows == 100
    assert any("even sample of 25 of the 100 usable rows (every 4th row)" in n for n in report.notes)
    whole = inspect_data(path, tokenizer=tokenizer)
    assert whole.measured_rows == 100 and not whole.notes


def test_training_data_is_an_arrow_file_on_disk(tmp_path, tokenizer, monkeypatch):
    path = write_jsonl(tmp_path / "d.jsonl", chat_rows(600))
    monkeypatch.setattr(loading, "KEEP_ROWS_BYTES", 0)
    data = load_rows(path)
    kwargs = dict(max_seq_length=128, responses_only=True, packing=False)
    in_memory = build_training_dataset(data, tokenizer, **kwargs)
    on_disk = build_training_dataset(data, tokenizer, cache_dir=tmp_path / "cache", **kwargs)
    assert [f["filename"] for f in on_disk.cache_files] == [str(tmp_path / "cache" / "tokenized.arrow")]
    assert in_memory.cache_files == []
    assert len(on_disk) == len(in_memory) == 600
    assert on_disk[:] == in_memory[:]
    assert not list((tmp_path / "cache").glob(".*tmp*"))


def test_the_trainer_builds_its_datasets_on_disk(tmp_path, tokenizer):
    from tuitune.config import Config
    from tuitune.trainer.sft import build_datasets

    class Sink:
        def __init__(self):
            self.said = []

        def log(self, text, level="info"):
            self.said.append(text)

        warning = log

    path = tmp_path / "d.json"
    path.write_text(json.dumps(chat_rows(40))[:-300], encoding="utf-8")  # cut off
    config = Config()
    config.data.path, config.data.salvage, config.data.eval_fraction = str(path), True, 0.25
    config.model.max_seq_length = 64
    sink = Sink()
    train, evaluation = build_datasets(config, tokenizer, sink, cache_dir=tmp_path / "run" / ".data")
    assert len(train) + len(evaluation) < 40
    assert train.cache_files and all(str(tmp_path / "run" / ".data") in f["filename"]
                                     for f in train.cache_files + evaluation.cache_files)
    assert any("salvaged" in s for s in sink.said)
