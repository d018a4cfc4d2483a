"""The record sources that the readers return: a dataset's raw records by index, in order.

`RecordSource` is the interface (length, one record by 0-based index for previews, an iterator
over all records); `ListSource` holds rows in memory, `JsonlSource` and `JsonArraySource` read a
file through a byte-offset index, `ArrowSource` wraps a pyarrow Table. `BrokenFileError` is the
error of a JSON file that breaks part-way; it carries the complete records before the break.
"""

from __future__ import annotations

import json
from array import array
from pathlib import Path
from typing import Any, Iterator

from tuitune.data.json_scan import ArrayScan, ends_early
from tuitune.errors import TuituneError


class RecordError(TuituneError):
    """One record could not be read (for instance a JSONL line that is not valid JSON)."""


class RecordSource:
    """Raw records of one dataset. Subclasses set `path`, `kind` and implement the three methods."""

    path: str
    kind: str  # json, jsonl, csv, parquet, arrow (save_to_disk), hub
    notes: tuple[str, ...] = ()  # what the reader had to do besides reading (a salvage, say)

    def __len__(self) -> int:
        raise NotImplementedError

    def record(self, index: int) -> dict:
        """The record at 0-based `index`; raises RecordError when that record is unreadable."""
        raise NotImplementedError

    def records(self) -> Iterator[tuple[int, dict | RecordError]]:
        """(index, record or RecordError) for every record, in order."""
        for index in range(len(self)):
            try:
                yield index, self.record(index)
            except RecordError as exc:
                yield index, exc

    def sample(self, count: int = 20) -> list[dict]:
        """The first `count` readable records (for format detection and previews)."""
        out = []
        for _, rec in self.records():
            if isinstance(rec, dict):
                out.append(rec)
                if len(out) >= count:
                    break
        return out

    def columns(self, count: int = 50) -> list[str]:
        names: dict[str, None] = {}
        for rec in self.sample(count):
            names.update(dict.fromkeys(rec))
        return list(names)


class ListSource(RecordSource):
    """Records already in memory (JSON objects, CSV rows)."""

    def __init__(self, path: str, kind: str, rows: list):
        self.path, self.kind, self._rows = path, kind, rows

    def __len__(self) -> int:
        return len(self._rows)

    def record(self, index: int) -> dict:
        rec = self._rows[index]
        if not isinstance(rec, dict):
            raise RecordError(f"is a JSON {type(rec).__name__}, not an object with named fields")
        return rec


def _ends_early(exc: ValueError) -> bool:
    if isinstance(exc, json.JSONDecodeError):
        return ends_early(exc, exc.doc)
    return isinstance(exc, UnicodeDecodeError) and exc.reason == "unexpected end of data"


def _parse_object(text: bytes | str, cut_off: bool = False) -> dict:
    """One JSON object; `cut_off`: the text is a file's unterminated last line."""
    try:
        rec = json.loads(text)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        if cut_off and _ends_early(exc):
            raise RecordError("is cut off: the file ends in the middle of this row (an interrupted "
                              "download or copy?); the rows before it are complete") from None
        raise RecordError(f"is not valid JSON ({exc})") from None
    except RecursionError:
        raise RecordError("is nested too deeply to read") from None
    if not isinstance(rec, dict):
        raise RecordError(f"is a JSON {type(rec).__name__}, not an object with named fields")
    return rec


class JsonlSource(RecordSource):
    """A JSON Lines file indexed by the byte offset of each non-blank line."""

    kind = "jsonl"

    def __init__(self, path: str, offsets: array, size: int = -1):
        self.path, self._offsets = path, offsets
        self._size = size  # a last line without a newline at this size may be a cut-off row

    def __len__(self) -> int:
        return len(self._offsets)

    def _parse(self, line: bytes, index: int) -> dict:
        last = index == len(self._offsets) - 1 and not line.endswith(b"\n")
        return _parse_object(line, cut_off=last)

    def record(self, index: int) -> dict:
        with open(self.path, "rb") as handle:
            handle.seek(self._offsets[index])
            return self._parse(handle.readline(), index)

    def records(self) -> Iterator[tuple[int, dict | RecordError]]:
        index, count = 0, len(self._offsets)
        with open(self.path, "rb") as handle:
            for line in handle:
                if index >= count:
                    break  # lines appended after indexing are not part of this source
                if not line.strip():
                    continue
                try:
                    yield index, self._parse(line, index)
                except RecordError as exc:
                    yield index, exc
                index += 1


class JsonArraySource(RecordSource):
    """A JSON file holding an array of objects, indexed by the byte range of each element."""

    kind = "json"

    def __init__(self, path: str, starts: array, ends: array, notes: tuple[str, ...] = ()):
        self.path, self._starts, self._ends, self.notes = path, starts, ends, notes

    def __len__(self) -> int:
        return len(self._starts)

    def record(self, index: int) -> dict:
        with open(self.path, "rb") as handle:
            handle.seek(self._starts[index])
            return _parse_object(handle.read(self._ends[index] - self._starts[index]))

    def records(self) -> Iterator[tuple[int, dict | RecordError]]:
        with open(self.path, "rb") as handle:
            for index, (start, end) in enumerate(zip(self._starts, self._ends)):
                handle.seek(start)
                try:
                    yield index, _parse_object(handle.read(end - start))
                except RecordError as exc:
                    yield index, exc


class BrokenFileError(TuituneError):
    """A JSON file that breaks (cut off, or a syntax error) after some complete records.

    The message says where it breaks and how many complete records precede the break;
    `salvaged()` is a source of exactly those records (no second read of the file).
    """

    def __init__(self, path: Path, scan: ArrayScan, line: int, column: int, size: int):
        broken = scan.broken
        assert broken is not None
        self.path, self.records, self.offset = str(path), len(scan.starts), broken.offset
        self.line, self.column, self.cut_off = line, column, broken.cut_off
        self._scan = scan
        n = self.records
        where = f"byte {self.offset:,} (line {line:,}, column {column:,})"
        if broken.cut_off and broken.inside_record:
            what = (f"{path} is cut off: it ends in the middle of record {n + 1:,}, which starts at "
                    f"{where}; an interrupted download or copy?")
        elif broken.cut_off:
            after = f"after record {n:,}" if n else "before its first record"
            what = f"{path} is cut off {after} at {where}: the closing `]` is missing."
        else:
            what = f"{path} is not valid JSON at {where}: {broken.detail}."
        skipped = size - self.offset
        if n:
            rest = "" if broken.cut_off and not broken.inside_record else (
                f" (the {skipped:,} bytes from the break on are skipped)")
            records = "record before the break is" if n == 1 else "records before the break are"
            how = (f" The {n:,} {records} complete: use them{rest} with "
                   "--salvage (`tuitune data inspect --salvage`, `tuitune train --salvage`) or the "
                   "Salvage button on the Dataset screen, or fix the file (download it again).")
        else:
            how = (" No record before the break is complete, so there is nothing to salvage: "
                   "fix the file or download it again.")
        super().__init__(what + how)
        self.note = (f"salvaged {n:,} complete record(s) of {path}; the file breaks at {where}"
                     + ("" if broken.cut_off and not broken.inside_record
                        else f", and the {skipped:,} bytes from there on are skipped"))

    def salvaged(self) -> JsonArraySource:
        """The complete records before the break."""
        return JsonArraySource(self.path, self._scan.starts, self._scan.ends, notes=(self.note,))


class ArrowSource(RecordSource):
    """Records of a pyarrow Table (Parquet files, `save_to_disk` folders, hub datasets)."""

    def __init__(self, path: str, kind: str, table: Any):
        self.path, self.kind, self._table = path, kind, table

    def __len__(self) -> int:
        return self._table.num_rows

    def record(self, index: int) -> dict:
        return self._table.slice(index, 1).to_pylist()[0]

    def records(self) -> Iterator[tuple[int, dict | RecordError]]:
        index = 0
        for batch in self._table.to_batches(max_chunksize=2048):
            for rec in batch.to_pylist():
                yield index, rec
                index += 1

    def columns(self, count: int = 50) -> list[str]:
        return list(self._table.column_names)
