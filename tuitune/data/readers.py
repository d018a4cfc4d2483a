"""Reading raw records from data files: JSON, JSONL, CSV/TSV, Parquet and `save_to_disk` folders.

Every reader gives a `RecordSource`: its length, any record by 0-based index (for previews) and
an iterator over all records. JSONL and JSON-array files are indexed (byte offsets of each record)
in one streaming pass rather than parsed whole, with `progress(done_bytes, total_bytes)` called as
the scan advances, so a UI can index a file of hundreds of MB from a background thread and show a
progress bar. A JSON file that breaks off part-way raises `BrokenFileError`, which says where and
carries the complete records before the break (`salvaged()`), so using them costs no second read.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from array import array
from pathlib import Path
from typing import Any, Callable

from tuitune.data.json_scan import NotUtf8, line_and_column, scan_array
from tuitune.data.record_sources import (ArrowSource, BrokenFileError, JsonArraySource, JsonlSource,
                                         ListSource, RecordError, RecordSource)
from tuitune.errors import TuituneError

__all__ = ["ArrowSource", "BrokenFileError", "JsonArraySource", "JsonlSource", "ListSource",
           "RecordError", "RecordSource", "open_file", "read_csv", "read_json", "read_jsonl",
           "read_parquet", "read_saved_dataset", "is_saved_dataset", "pick_split", "arrow_table_of"]

Progress = Callable[[int, int], None]

JSON_SUFFIXES = {".json"}
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".jsonlines"}
CSV_SUFFIXES = {".csv", ".tsv"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
DATA_SUFFIXES = JSON_SUFFIXES | JSONL_SUFFIXES | CSV_SUFFIXES | PARQUET_SUFFIXES

_PROGRESS_STEP = 1 << 20  # report at most once per MiB
_BOM = b"\xef\xbb\xbf"


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TuituneError(f"Cannot read {path}: {exc.strerror or exc}. Check the path and its "
                           "permissions.") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TuituneError(f"{path} is not UTF-8 text (undecodable byte at offset {exc.start}). "
                           "Data files must be UTF-8 JSON, JSONL or CSV, or Parquet.") from None


def _check_readable(path: Path) -> int:
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise TuituneError(f"Cannot read {path}: {exc.strerror or exc}. Check the path and its "
                           "permissions.") from None
    return size


def _first_char(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(4096)
    text = head.decode("utf-8-sig", errors="replace").lstrip()
    return text[:1]


def read_jsonl(path: Path, progress: Progress | None = None) -> JsonlSource:
    total = _check_readable(path)
    offsets = array("Q")
    position = 0
    next_report = _PROGRESS_STEP
    _report(progress, 0, total)
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                offsets.append(position)
            position += len(line)
            if position >= next_report:
                _report(progress, position, total)
                next_report = position + _PROGRESS_STEP
    _report(progress, total, total)
    if offsets:
        first = offsets[0]
        with open(path, "rb") as handle:
            handle.seek(first)
            line = handle.readline()
        try:
            line.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise TuituneError(f"{path} is not UTF-8 text. Data files must be UTF-8 JSON, JSONL or "
                               "CSV, or Parquet.") from None
        try:
            json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise TuituneError(f"{path} is not JSON Lines: its first row is not valid JSON ({exc}). "
                               "Each line must hold one JSON object.") from None
    return JsonlSource(str(path), offsets, total)


def _index_json_array(path: Path, start: int, total: int, progress: Progress | None) -> JsonArraySource:
    """Index the array whose `[` ends just before byte `start`; BrokenFileError if it breaks."""
    try:
        with open(path, "rb") as handle:
            scan = scan_array(handle, start, total, progress)
            if scan.broken is not None:
                line, column = line_and_column(handle, scan.broken.offset)
                raise BrokenFileError(path, scan, line, column, total)
    except NotUtf8 as exc:
        raise TuituneError(f"{path} is not UTF-8 text (undecodable byte at offset {exc.offset:,}). "
                           "Data files must be UTF-8 JSON, JSONL or CSV, or Parquet.") from None
    except OSError as exc:
        raise TuituneError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    _report(progress, total, total)
    return JsonArraySource(str(path), scan.starts, scan.ends)


def _array_member_start(text: str) -> int | None:
    """In a broken top-level object, the character index just past the `[` of the member whose
    value breaks, when that value is an array (`{"version": 2, "data": [ ...cut off`)."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")
    pos = ws.match(text, text.index("{") + 1).end()
    try:
        while pos < len(text) and text[pos] == '"':
            _, pos = decoder.raw_decode(text, pos)
            pos = ws.match(text, pos).end()
            if text[pos:pos + 1] != ":":
                return None
            pos = ws.match(text, pos + 1).end()
            try:
                _, end = decoder.raw_decode(text, pos)
            except ValueError:
                return pos + 1 if text[pos:pos + 1] == "[" else None
            pos = ws.match(text, end).end()
            if text[pos:pos + 1] != ",":
                return None
            pos = ws.match(text, pos + 1).end()
    except (ValueError, RecursionError):
        return None
    return None


def _looks_like_jsonl(path: Path) -> bool:
    """A first line that is a whole JSON object followed by another line: JSON Lines."""
    with open(path, "rb") as handle:
        first = handle.readline(1 << 24)
        second = handle.readline(1 << 24)
        while second and not second.strip():
            second = handle.readline(1 << 24)
    try:
        value = json.loads(first.removeprefix(_BOM))
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and second.lstrip().startswith(b"{")


def _rows_of_object(path: Path, obj: dict) -> list:
    lists = {key: value for key, value in obj.items() if isinstance(value, list)}
    record_lists = {k: v for k, v in lists.items() if v and all(isinstance(x, dict) for x in v[:100])}
    if len(record_lists) == 1:
        return next(iter(record_lists.values()))
    if len(record_lists) > 1:
        names = ", ".join(f"`{k}`" for k in record_lists)
        raise TuituneError(f"{path} holds several lists of rows ({names}). Keep one list, or save "
                           "the rows you want as JSON Lines.")
    lengths = {len(v) for v in lists.values()}
    if lists and len(lists) == len(obj) and len(lengths) == 1 and lengths != {0}:
        # Column-oriented: {"instruction": [...], "output": [...]}.
        names = list(lists)
        return [dict(zip(names, values)) for values in zip(*(lists[n] for n in names))]
    keys = ", ".join(f"`{k}`" for k in list(obj)[:10]) or "none"
    raise TuituneError(f"{path} holds a JSON object (keys: {keys}) but no list of rows. Use an "
                       "array of objects, an object holding one such array, or JSON Lines.")


def read_json(path: Path, progress: Progress | None = None) -> RecordSource:
    total = _check_readable(path)
    _report(progress, 0, total)
    with open(path, "rb") as handle:
        head = handle.read(65536)
    bom = len(_BOM) if head.startswith(_BOM) else 0
    stripped = head[bom:].lstrip()
    first = stripped[:1].decode("latin-1")
    if first == "[":
        return _index_json_array(path, bom + len(head[bom:]) - len(stripped) + 1, total, progress)
    if first == "{":
        if _looks_like_jsonl(path):  # JSON Lines saved as .json
            return read_jsonl(path, progress)
        text = _read_text(path)
        try:
            obj = json.loads(text)
        except RecursionError:
            raise TuituneError(f"{path} is nested too deeply to read.") from None
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":  # JSON Lines saved as .json
                del text
                return read_jsonl(path, progress)
            member = _array_member_start(text)
            if member is not None:  # `{"data": [ ...` that breaks inside the array
                start = bom + len(text[:member].encode("utf-8"))
                del text
                return _index_json_array(path, start, total, progress)
            raise TuituneError(f"{path} is not valid JSON at line {exc.lineno:,}, column "
                               f"{exc.colno:,}: {exc.msg}. Fix the file, or save it as JSON Lines "
                               "(one object per line).") from None
        _report(progress, total, total)
        return ListSource(str(path), "json", _rows_of_object(path, obj))
    raise TuituneError(f"{path} is not a JSON array or object (it starts with {first!r}). "
                       "Use an array of objects, or JSON Lines.")


class _CountingReader(io.RawIOBase):
    """Wraps a binary file, reporting the bytes read so far."""

    def __init__(self, handle, total: int, progress: Progress | None):
        self._handle, self._total, self._progress = handle, total, progress
        self._done, self._next = 0, _PROGRESS_STEP

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._handle.readinto(buffer)
        self._done += count or 0
        if self._done >= self._next:
            _report(self._progress, self._done, self._total)
            self._next = self._done + _PROGRESS_STEP
        return count


def read_csv(path: Path, progress: Progress | None = None) -> ListSource:
    total = _check_readable(path)
    _report(progress, 0, total)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, "rb") as raw:
        head = raw.read(65536).decode("utf-8-sig", errors="replace")
    first_line = head.splitlines()[0] if head.strip() else ""
    if path.suffix.lower() == ".tsv" or ("\t" in first_line and "," not in first_line):
        delimiter = "\t"
    elif ";" in first_line and "," not in first_line:
        delimiter = ";"
    else:
        delimiter = ","
    rows: list[dict] = []
    try:
        with open(path, "rb") as raw:
            counted = io.BufferedReader(_CountingReader(raw, total, progress))
            text = io.TextIOWrapper(counted, encoding="utf-8-sig", newline="")
            reader = csv.DictReader(text, delimiter=delimiter)
            for rec in reader:
                rec.pop(None, None)  # cells beyond the header
                rows.append({k: v for k, v in rec.items() if k is not None})
            fields = reader.fieldnames or []
    except UnicodeDecodeError:
        raise TuituneError(f"{path} is not UTF-8 text. Save the CSV as UTF-8.") from None
    except csv.Error as exc:
        raise TuituneError(f"{path} is not valid CSV: {exc}.") from None
    _report(progress, total, total)
    if not fields:
        return ListSource(str(path), "csv", [])
    return _CsvSource(str(path), rows, list(fields))


class _CsvSource(ListSource):
    def __init__(self, path: str, rows: list, fields: list[str]):
        super().__init__(path, "csv", rows)
        self._fields = fields

    def columns(self, count: int = 50) -> list[str]:
        return list(self._fields)


def read_parquet(path: Path, progress: Progress | None = None) -> ArrowSource:
    import pyarrow as pa
    import pyarrow.parquet as pq

    total = _check_readable(path)
    _report(progress, 0, total)
    try:
        parquet = pq.ParquetFile(path)
        groups = parquet.num_row_groups
        tables = []
        for group in range(groups):
            tables.append(parquet.read_row_group(group))
            _report(progress, (group + 1) * total // max(groups, 1), total)
        table = pa.concat_tables(tables) if tables else parquet.schema_arrow.empty_table()
    except (pa.ArrowException, OSError) as exc:
        raise TuituneError(f"{path} is not a readable Parquet file: {exc}.") from None
    _report(progress, total, total)
    return ArrowSource(str(path), "parquet", table)


def arrow_table_of(dataset: Any) -> Any:
    """The pyarrow Table behind a `datasets.Dataset` (with any index mapping applied)."""
    if getattr(dataset, "_indices", None) is not None:
        dataset = dataset.flatten_indices()
    return dataset.data.table


def pick_split(where: str, splits: dict) -> Any:
    """The `train` split of a DatasetDict, or its only split; otherwise an error naming them."""
    if "train" in splits:
        return splits["train"]
    if len(splits) == 1:
        return next(iter(splits.values()))
    names = ", ".join(splits) or "none"
    raise TuituneError(f"{where} has several splits ({names}) and none is called `train`. Save the "
                       "split you want on its own.")


def read_saved_dataset(path: Path, progress: Progress | None = None) -> ArrowSource:
    from datasets import DatasetDict, load_from_disk

    _report(progress, 0, 1)
    try:
        loaded = load_from_disk(str(path))
    except Exception as exc:  # datasets raises several types for damaged folders
        raise TuituneError(f"Cannot load the `datasets` folder {path}: {exc}") from None
    if isinstance(loaded, DatasetDict):
        loaded = pick_split(str(path), dict(loaded))
    _report(progress, 1, 1)
    return ArrowSource(str(path), "arrow", arrow_table_of(loaded))


def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").exists()
                              or ((path / "state.json").exists()
                                  and (path / "dataset_info.json").exists()))


def open_file(path: Path, progress: Progress | None = None, *, salvage: bool = False) -> RecordSource:
    """A RecordSource for a local file or `save_to_disk` folder, chosen by suffix, then by content.

    A JSON file that breaks part-way raises BrokenFileError; with `salvage` the complete records
    before the break are returned instead (the source's `notes` say so).
    """
    try:
        return _open_file(path, progress)
    except BrokenFileError as exc:
        if salvage and exc.records:
            return exc.salvaged()
        raise


def _open_file(path: Path, progress: Progress | None) -> RecordSource:
    if path.is_dir():
        if is_saved_dataset(path):
            return read_saved_dataset(path, progress)
        found = sorted(p.name for p in path.iterdir() if p.suffix.lower() in DATA_SUFFIXES)[:8]
        hint = f" Data files in it: {', '.join(found)}; pass one of them." if found else ""
        raise TuituneError(f"{path} is a folder but not a `datasets` save_to_disk folder (it has no "
                           f"dataset_info.json and state.json, nor dataset_dict.json).{hint}")
    if not path.exists():
        raise TuituneError(f"{path} does not exist. Pass a data file (JSON, JSONL, CSV, Parquet), "
                           "a `datasets` save_to_disk folder or a hub dataset name (owner/name).")
    size = _check_readable(path)
    if size == 0:
        raise TuituneError(f"{path} is empty: it holds no rows.")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return read_parquet(path, progress)
    if suffix in CSV_SUFFIXES:
        return read_csv(path, progress)
    if suffix in JSONL_SUFFIXES:
        return read_jsonl(path, progress)
    if suffix in JSON_SUFFIXES:
        return read_json(path, progress)
    with open(path, "rb") as handle:
        if handle.read(4) == b"PAR1":
            return read_parquet(path, progress)
    first = _first_char(path)
    if first == "[":
        return read_json(path, progress)
    if first == "{":
        return read_json(path, progress)  # falls back to JSON Lines on "Extra data"
    if not first:
        raise TuituneError(f"{path} is empty: it holds no rows.")
    raise TuituneError(f"Cannot tell what kind of file {path} is (suffix '{suffix or 'none'}', it "
                       "starts with neither JSON nor Parquet). Use .json, .jsonl, .csv, .tsv or "
                       ".parquet.")
