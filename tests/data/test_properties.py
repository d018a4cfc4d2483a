"""Property tests (hypothesis): whatever the input, the readers, format detection, column mapping,
normalisation and the config parser either work or raise tuitune's own error (TuituneError and
its subclasses), never a library exception or a traceback."""

from __future__ import annotations

import json
import os
import string
import tempfile
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tuitune.config import FIELDS, config_from_dict, load_config
from tuitune.data import json_scan, load_rows
from tuitune.data.columns import TARGETS, map_record, parse_mapping, suggest_mapping
from tuitune.data.formats import FORMATS, detect_format
from tuitune.data.loading import open_source
from tuitune.data.normalize import normalize_record
from tuitune.data.readers import BrokenFileError
from tuitune.errors import TuituneError

# The suite draws the same examples on every run, so CI's verdict does not depend on luck; set
# TUITUNE_EXPLORE=N to search N fresh random examples per property instead (run that after changing a reader).
_EXPLORE = int(os.environ.get("TUITUNE_EXPLORE", "0") or 0)
SETTINGS = settings(max_examples=_EXPLORE or 150, deadline=None, derandomize=not _EXPLORE, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

names = st.text(alphabet=string.ascii_letters + "_ -é", min_size=0, max_size=12)
scalars = st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False) | \
    st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(names, inner, max_size=4), max_leaves=20)
known_names = st.sampled_from(["instruction", "input", "output", "messages", "conversations",
                               "text", "prompt", "chosen", "rejected", "role", "content", "from",
                               "value", "system", "response", "completion", "dialog"])
records = st.dictionaries(known_names | names, json_values | st.lists(
    st.dictionaries(st.sampled_from(["role", "content", "from", "value", "speaker", "text"]),
                    scalars, max_size=3), max_size=4), max_size=6)
suffixes = st.sampled_from([".json", ".jsonl", ".csv", ".tsv", ".txt", ".parquet", ""])


def _load_everything(path: Path, salvage: bool) -> None:
    data = load_rows(path, salvage=salvage)
    for row in data.rows:
        row.content_key()
    for number in range(1, data.row_count + 1):
        try:
            data.raw_row(number)
        except TuituneError:
            pass


@SETTINGS
@given(content=st.binary(max_size=400), suffix=suffixes, salvage=st.booleans())
def test_any_bytes_in_any_file_type(content, suffix, salvage):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        try:
            _load_everything(path, salvage)
        except TuituneError:
            pass


@SETTINGS
@given(rows=st.lists(records, max_size=6), suffix=st.sampled_from([".json", ".jsonl", ".csv"]),
       salvage=st.booleans(), data=st.data())
def test_plausible_files_cut_anywhere(rows, suffix, salvage, data):
    if suffix == ".json":
        text = json.dumps(rows, indent=data.draw(st.sampled_from([None, 1])), ensure_ascii=False)
    elif suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        columns = list(dict.fromkeys(k for r in rows for k in r))
        text = ",".join(json.dumps(c) for c in columns) + "\n" + "".join(
            ",".join(json.dumps(json.dumps(r.get(c))) for c in columns) + "\n" for r in rows)
    raw = text.encode("utf-8")
    cut = data.draw(st.integers(0, len(raw)))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(raw[:cut])
        try:
            _load_everything(path, salvage)
        except TuituneError:
            pass


@SETTINGS
@given(rows=st.lists(st.dictionaries(names, json_values, max_size=3), min_size=1, max_size=8),
       indent=st.sampled_from([None, 0, 2]), data=st.data())
def test_a_cut_json_array_salvages_exactly_the_records_before_the_cut(rows, indent, data):
    text = json.dumps(rows, indent=indent, ensure_ascii=False)
    raw = text.encode("utf-8")
    cut = data.draw(st.integers(1, len(raw) - 1))
    complete = 0
    decoder = json.JSONDecoder()
    body = raw[:cut].decode("utf-8", errors="ignore")
    position = body.index("[") + 1
    for row in rows:  # how many elements lie wholly before the cut
        while position < len(body) and body[position] in " \n,":
            position += 1
        try:
            _, end = decoder.raw_decode(body, position)
        except ValueError:
            break
        complete += 1
        position = end
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.json"
        path.write_bytes(raw[:cut])
        with pytest.raises(BrokenFileError) as info:
            open_source(path)
        assert info.value.records == complete
        assert info.value.cut_off
        salvaged = info.value.salvaged()
        assert [record for _, record in salvaged.records()] == rows[:complete]


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "NaN"])
@pytest.mark.parametrize("keep", [1, 3, 5])
def test_a_json_array_cut_inside_a_non_finite_literal_counts_as_cut_off(literal, keep):
    """Python's json writes inf and nan as bare literals; a cut inside one is a truncation, not bad JSON."""
    text = '[{"a": 1}, {"b": ' + literal + '}]'
    cut = text.index(literal) + min(keep, len(literal) - 1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.json"
        path.write_text(text[:cut], encoding="utf-8")
        with pytest.raises(BrokenFileError) as info:
            open_source(path)
        assert info.value.cut_off
        assert info.value.records == 1


@SETTINGS
@given(rows=st.lists(st.dictionaries(names, json_values, max_size=3), max_size=12),
       chunk=st.integers(1, 64))
def test_streaming_index_is_independent_of_the_chunk_size(rows, chunk, monkeypatch):
    monkeypatch.setattr(json_scan, "CHUNK", chunk)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.json"
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        source = open_source(path)
        assert [record for _, record in source.records()] == rows


@SETTINGS
@given(columns=st.lists(known_names | names, max_size=8), rows=st.lists(records, max_size=5))
def test_format_detection_and_suggestions_never_raise(columns, rows):
    fmt, reason = detect_format(columns, rows)
    assert fmt is None or fmt in FORMATS
    assert isinstance(reason, str) and reason
    suggestion = suggest_mapping(columns, rows)
    if suggestion is not None:
        assert parse_mapping(suggestion.text()) == suggestion


@SETTINGS
@given(record=records | json_values, fmt=st.sampled_from(list(FORMATS)), number=st.integers(1, 10**6))
def test_normalisation_never_raises(record, fmt, number):
    row, problems = normalize_record(record, fmt, number)
    assert row is not None or problems
    assert all(p.row == number for p in problems)


mapping_text = st.lists(st.tuples(st.sampled_from(TARGETS) | names, names), max_size=5).map(
    lambda pairs: ",".join(f"{a}={b}" for a, b in pairs))


@SETTINGS
@given(value=mapping_text | st.text(max_size=40) | json_values, record=records | json_values)
def test_column_mapping_parses_or_refuses_and_applies_to_anything(value, record):
    try:
        mapping = parse_mapping(value)
    except TuituneError as exc:
        assert str(exc)
        return
    assert parse_mapping(mapping.text()) == mapping
    map_record(record, mapping)


toml_keys = st.sampled_from(sorted({key.split(".")[1] for key in FIELDS})) | names
def _toml_containers(inner):
    return st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3)


toml_values = st.recursive(st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats() | st.text(max_size=12),
                           _toml_containers, max_leaves=8)
sections = st.sampled_from(["model", "data", "lora", "training", "output"]) | names


@SETTINGS
@given(config=st.dictionaries(sections, st.dictionaries(toml_keys, toml_values, max_size=5)
                              | toml_values, max_size=5))
def test_config_from_any_dict_is_a_config_or_a_config_error(config):
    try:
        config_from_dict(config)
    except TuituneError as exc:
        assert "invalid field" in str(exc)


@SETTINGS
@given(text=st.text(max_size=300) | st.builds(
    lambda s, k, v: f"[{s}]\n{k} = {v}\n", sections, toml_keys,
    st.sampled_from(["1", "-3", "1e400", "nan", "true", '"x"', "[1, 2]", "{a = 1}", '"a=b"', "'"])))
def test_config_file_with_any_text(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.toml"
        path.write_text(text, encoding="utf-8")
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            valid_toml = False
        else:
            valid_toml = True
        try:
            load_config(path)
        except TuituneError as exc:
            assert valid_toml or "is not valid TOML" in str(exc)
