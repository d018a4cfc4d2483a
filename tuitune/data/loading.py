"""`load_rows`: open any supported source, detect its format and normalise every row."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tuitune.data import problems as P
from tuitune.data.formats import FORMATS, detect_format, resolve_format_name
from tuitune.data.hub import load_hub_dataset, looks_like_hub_name
from tuitune.data.normalize import Row, normalize_record
from tuitune.data.problems import Problem
from tuitune.data.readers import ArrowSource, RecordError, RecordSource, arrow_table_of, open_file
from tuitune.errors import TuituneError

Progress = Callable[[int, int], None]

# Share of the progress bar given to indexing the file, by kind; parsing rows takes the rest.
_INDEX_SHARE = {"jsonl": 0.15, "json": 0.5, "csv": 0.8, "parquet": 0.3}
_KIND_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
                   ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class LoadedData:
    """A dataset read and normalised. `rows` holds only usable rows; `problems` every finding."""

    path: str
    format: str
    format_reason: str
    rows: list[Row]
    problems: list[Problem]
    row_count: int                      # rows in the source, usable or not
    source: RecordSource = field(repr=False)

    @property
    def usable_rows(self) -> int:
        return len(self.rows)

    @property
    def columns(self) -> list[str]:
        return self.source.columns()

    def raw_row(self, number: int) -> dict:
        """The raw record of 1-based row `number` (for previews); RecordError if unreadable."""
        return self.source.record(number - 1)


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


def open_source(path: str | Path, progress: Progress | None = None) -> RecordSource:
    """Index a local file or folder, or load a hub dataset, without normalising rows.

    `progress(done_bytes, total_bytes)` is called as the file is scanned. Row access by index
    (`source.record(i)`) is then cheap, for previews of files of any size.
    """
    text = str(path)
    local = Path(text).expanduser()
    if not local.exists() and looks_like_hub_name(text):
        dataset = load_hub_dataset(text)
        return ArrowSource(text, "hub", arrow_table_of(dataset))
    return open_file(local, progress)


def _total_bytes(source: RecordSource) -> int:
    try:
        path = Path(source.path)
        if path.is_file():
            return max(path.stat().st_size, 1)
    except OSError:
        pass
    return max(len(source), 1)


def load_rows(path: str | Path | RecordSource, format: str | None = None,
              progress: Progress | None = None) -> LoadedData:
    """Read `path` (a file, a `save_to_disk` folder, a hub name, or an opened RecordSource).

    `format` forces one of FORMATS (or an alias); None or "auto" detects it. `progress(done,
    total)` is called with byte counts that grow monotonically to `total` over indexing and
    parsing together; it runs in the loading thread, and an exception raised from it (for
    instance a "cancelled" flag a UI sets) stops the load and propagates. Raises TuituneError for
    unreadable or empty sources and undetectable formats; row-level trouble goes into
    `problems` instead.
    """
    forced = resolve_format_name(format)
    if isinstance(path, RecordSource):
        source, index_share = path, 0.0
    else:
        local = Path(str(path)).expanduser()
        if local.is_file():
            index_share = _INDEX_SHARE.get(_KIND_BY_SUFFIX.get(local.suffix.lower(), "jsonl"))
            total = max(local.stat().st_size, 1)
            source = open_source(path, _scaled(progress, total, 0.0, index_share))
        else:  # folders and hub datasets: progress only over the rows
            source, index_share = open_source(path), 0.0
    total = _total_bytes(source)
    parse_report = _scaled(progress, total, index_share, 1.0 - index_share)
    where = source.path
    count = len(source)
    if count == 0:
        raise TuituneError(f"{where} holds no rows.")

    if forced is not None:
        fmt, reason = forced, f"set explicitly ({FORMATS[forced].title})"
    else:
        fmt, reason = detect_format(source.columns(), source.sample(20))
        if fmt is None:
            raise TuituneError(f"Cannot tell the format of {where}. {reason} Rename the columns, "
                               f"or pass --format with one of: {', '.join(FORMATS)}.")

    rows: list[Row] = []
    problems: list[Problem] = []
    first_seen: dict[bytes, int] = {}
    step = max(count // 200, 1)
    for index, record in source.records():
        number = index + 1
        if isinstance(record, RecordError):
            problems.append(Problem(number, P.UNREADABLE, f"the row {record}"))
        else:
            row, found = normalize_record(record, fmt, number)
            problems.extend(found)
            if row is not None:
                key = row.content_key()
                earlier = first_seen.get(key)
                if earlier is not None:
                    problems.append(Problem(number, P.DUPLICATE, f"duplicate of row {earlier}"))
                else:
                    first_seen[key] = number
                    rows.append(row)
        if parse_report is not None and (index % step == 0 or number == count):
            parse_report(number, count)
    return LoadedData(path=where, format=fmt, format_reason=reason, rows=rows, problems=problems,
                      row_count=count, source=source)
