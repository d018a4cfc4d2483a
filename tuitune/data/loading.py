"""`load_rows`: open any supported source, detect its format and normalise every row.

Rows of a small source are kept as objects. A large one (over KEEP_ROWS_BYTES) keeps only the
numbers of its usable rows and normalises a row again when it is asked for, so a file of a few GB
is checked in one streaming pass with memory for its index, not for millions of Python objects.
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from tuitune.data import problems as P
from tuitune.data.columns import (ColumnMapping, check_columns, map_record, mapped_columns,
                                  parse_mapping, suggest_mapping)
from tuitune.data.formats import FORMATS, detect_format, resolve_format_name
from tuitune.data.hub import load_hub_dataset, looks_like_hub_name
from tuitune.data.normalize import Row, normalize_record
from tuitune.data.problems import Problem
from tuitune.data.readers import (ArrowSource, ListSource, RecordError, RecordSource,
                                  arrow_table_of, open_file)
from tuitune.errors import TuituneError

Progress = Callable[[int, int], None]

# Share of the progress bar given to indexing the file, by kind; parsing rows takes the rest.
_INDEX_SHARE = {"jsonl": 0.15, "json": 0.5, "csv": 0.8, "parquet": 0.3}
_KIND_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
                   ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
KEEP_ROWS_BYTES = 64 << 20  # sources up to this size keep their normalised rows in memory


class UnknownFormatError(TuituneError):
    """No format fits the columns. `columns` are the ones seen; `suggestion` a likely mapping."""

    def __init__(self, message: str, columns: list[str], suggestion: ColumnMapping | None):
        super().__init__(message)
        self.columns, self.suggestion = columns, suggestion


class LazyRows(Sequence):
    """Usable rows of a large source, normalised again from the source when read."""

    def __init__(self, source: RecordSource, fmt: str, mapping: ColumnMapping, numbers: array):
        self._source, self._format, self._mapping, self.numbers = source, fmt, mapping, numbers

    def __len__(self) -> int:
        return len(self.numbers)

    def _row(self, number: int, record: object) -> Row | None:
        row, _ = normalize_record(map_record(record, self._mapping), self._format, number)
        return row

    def __getitem__(self, index):
        if isinstance(index, slice):
            return LazyRows(self._source, self._format, self._mapping, self.numbers[index])
        number = self.numbers[index]
        try:
            row = self._row(number, self._source.record(number - 1))
        except RecordError:
            row = None
        if row is None:
            raise TuituneError(f"Row {number} of {self._source.path} changed since the file was "
                               "read. Open the file again.")
        return row

    def __iter__(self) -> Iterator[Row]:
        if len(self.numbers) * 4 < len(self._source):  # a sparse sample: jump to each row
            for index in range(len(self.numbers)):
                yield self[index]
            return
        wanted = iter(self.numbers)
        number = next(wanted, None)
        for index, record in self._source.records():
            if number is None:
                return
            if index + 1 != number or isinstance(record, RecordError):
                continue
            row = self._row(number, record)
            if row is not None:
                yield row
            number = next(wanted, None)


@dataclass
class LoadedData:
    """A dataset read and normalised. `rows` holds only usable rows; `problems` every finding."""

    path: str
    format: str
    format_reason: str
    rows: Sequence[Row]                 # a list, or LazyRows for a large source
    problems: list[Problem]
    row_count: int                      # rows in the source, usable or not
    source: RecordSource = field(repr=False)
    notes: list[str] = field(default_factory=list)   # what reading took (a salvage, a mapping)
    mapping: ColumnMapping = field(default_factory=ColumnMapping)

    @property
    def usable_rows(self) -> int:
        return len(self.rows)

    @property
    def columns(self) -> list[str]:
        return self.source.columns()

    def raw_row(self, number: int) -> dict:
        """The raw record of 1-based row `number` (for previews); RecordError if unreadable."""
        return self.source.record(number - 1)

    def usable_row(self, number: int) -> Row | None:
        """The normalised row of 1-based row `number`, or None when that row is not used."""
        rows = self.rows
        if isinstance(rows, LazyRows):
            index = bisect.bisect_left(rows.numbers, number)
            found = index < len(rows) and rows.numbers[index] == number
        else:
            index = bisect.bisect_left(rows, number, key=lambda row: row.number)
            found = index < len(rows) and rows[index].number == number
        return rows[index] if found else None


def _scaled(progress: Progress | None, total: int, start: float, share: float) -> Progress | None:
    if progress is None:
        return None
    last = [0]

    def report(done: int, whole: int) -> None:
        value = int(total * (start + share * (done / whole if whole else 1.0)))
        value = min(max(value, last[0]), total)
        last[0] = value
        progress(value, total)

    return report


def open_source(path: str | Path, progress: Progress | None = None, *,
                salvage: bool = False) -> RecordSource:
    """Index a local file or folder, or load a hub dataset, without normalising rows.

    `progress(done_bytes, total_bytes)` is called as the file is scanned. Row access by index
    (`source.record(i)`) is then cheap, for previews of files of any size. With `salvage`, a
    JSON file that breaks part-way gives the complete records before the break.
    """
    text = str(path)
    local = Path(text).expanduser()
    if not local.exists() and looks_like_hub_name(text):
        dataset = load_hub_dataset(text)
        return ArrowSource(text, "hub", arrow_table_of(dataset))
    return open_file(local, progress, salvage=salvage)


def _total_bytes(source: RecordSource) -> int:
    try:
        path = Path(source.path)
        if path.is_file():
            return max(path.stat().st_size, 1)
    except OSError:
        pass
    return max(len(source), 1)


def _size_of(source: RecordSource) -> int:
    try:
        path = Path(source.path)
        if path.is_file():
            return path.stat().st_size
    except OSError:
        pass
    return 0


def _unknown_format(where: str, reason: str, columns: list[str], sample: list[dict],
                    mapping: ColumnMapping) -> UnknownFormatError:
    suggestion = None if mapping else suggest_mapping(columns, sample)
    used = f" (with the column mapping {mapping.text()})" if mapping else ""
    if suggestion:
        how = (f"These columns look like {', '.join(f'`{t}` = `{s}`' for t, s in suggestion.items())}: "
               f"read them so with --map {suggestion.text()} (data.columns in the config, or Map "
               "columns on the Dataset screen).")
    else:
        how = ("Map your columns to the names above with --map (data.columns in the config), for "
               "example --map instruction=question,output=answer, or rename them.")
    return UnknownFormatError(f"Cannot tell the format of {where}{used}. {reason} {how} "
                              f"--format forces one of: {', '.join(FORMATS)}.", columns, suggestion)


def load_rows(path: str | Path | RecordSource, format: str | None = None,
              progress: Progress | None = None, *, columns: object = None,
              salvage: bool = False) -> LoadedData:
    """Read `path` (a file, a `save_to_disk` folder, a hub name, or an opened RecordSource).

    `format` forces one of FORMATS (or an alias); None or "auto" detects it. `columns` is a
    column mapping (`instruction=question,output=answer`, a dict or a ColumnMapping) applied to
    every record first. `salvage` reads the complete records of a JSON file that breaks part-way
    (see `readers.BrokenFileError`); `notes` then say what was left out. `progress(done,
    total)` is called with byte counts that grow monotonically to `total` over indexing and
    parsing together; it runs in the loading thread, and an exception raised from it (for
    instance a "cancelled" flag a UI sets) stops the load and propagates. Raises TuituneError for
    unreadable or empty sources and undetectable formats (UnknownFormatError, with the columns
    seen and a suggested mapping); row-level trouble goes into `problems` instead.
    """
    forced = resolve_format_name(format)
    mapping = columns if isinstance(columns, ColumnMapping) else parse_mapping(columns)
    if isinstance(path, RecordSource):
        source, index_share = path, 0.0
    else:
        local = Path(str(path)).expanduser()
        if local.is_file():
            index_share = _INDEX_SHARE.get(_KIND_BY_SUFFIX.get(local.suffix.lower(), "jsonl"))
            total = max(local.stat().st_size, 1)
            source = open_source(path, _scaled(progress, total, 0.0, index_share), salvage=salvage)
        else:  # folders and hub datasets: progress only over the rows
            source, index_share = open_source(path, salvage=salvage), 0.0
    total = _total_bytes(source)
    parse_report = _scaled(progress, total, index_share, 1.0 - index_share)
    where = source.path
    count = len(source)
    if count == 0:
        raise TuituneError(f"{where} holds no rows.")
    if mapping:
        check_columns(mapping, source.columns(), where)

    if forced is not None:
        fmt, reason = forced, f"set explicitly ({FORMATS[forced].title})"
    else:
        sample = source.sample(20)
        fmt, reason = detect_format(mapped_columns(source.columns(), mapping),
                                    [map_record(r, mapping) for r in sample])
        if fmt is None:
            raise _unknown_format(where, reason, source.columns(), sample, mapping)
    if mapping:
        reason += f", with the column mapping {mapping.text()}"

    keep = isinstance(source, ListSource) or _size_of(source) <= KEEP_ROWS_BYTES
    kept: list[Row] = []
    numbers = array("L")
    problems: list[Problem] = []
    first_seen: dict[int, int] = {}
    step = max(count // 200, 1)
    for index, record in source.records():
        number = index + 1
        if isinstance(record, RecordError):
            problems.append(Problem(number, P.UNREADABLE, f"the row {record}"))
        else:
            row, found = normalize_record(map_record(record, mapping), fmt, number)
            problems.extend(found)
            if row is not None:
                key = int.from_bytes(row.content_key()[:8], "little")
                earlier = first_seen.get(key)
                if earlier is not None:
                    problems.append(Problem(number, P.DUPLICATE, f"duplicate of row {earlier}"))
                else:
                    first_seen[key] = number
                    if keep:
                        kept.append(row)
                    else:
                        numbers.append(number)
        if parse_report is not None and (index % step == 0 or number == count):
            parse_report(number, count)
    rows: Sequence[Row] = kept if keep else LazyRows(source, fmt, mapping, numbers)
    return LoadedData(path=where, format=fmt, format_reason=reason, rows=rows, problems=problems,
                      row_count=count, source=source, notes=list(source.notes), mapping=mapping)
