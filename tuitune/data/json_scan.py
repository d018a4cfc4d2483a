"""Streaming index of a JSON array on disk: where each record starts and ends, and where a broken
file breaks.

The file is read in chunks and decoded as Latin-1, which maps every byte to one character, so
character positions are byte offsets and the C JSON scanner can walk record by record without
the whole text in memory. (UTF-8 is checked on the side; the records are decoded properly when
read.) A file cut off mid-record, or broken by a syntax error, yields the complete records before
the break and a description of the break instead of an exception, so a caller can refuse it with
a precise message or use those records without reading the file again.
"""

from __future__ import annotations

import codecs
import json
import re
from array import array
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

Progress = Callable[[int, int], None]

CHUNK = 8 << 20                 # bytes read at a time
_NEED_MORE_MARGIN = 10          # a parse error this close to the buffer's end may just need more bytes
_WS = re.compile(r"[ \t\n\r]*")
_LITERALS = ("true", "false", "null", "NaN", "Infinity", "-Infinity")  # Python writes the last three
_NUMBER_TAIL = re.compile(r"[-+.eE0-9]{1,3}")


@dataclass
class Break:
    """Where a JSON array stops being readable."""

    offset: int          # byte offset of the break (for a cut-off record: where that record starts)
    cut_off: bool        # True: the file ends early (mid-record or before `]`); False: a syntax error
    detail: str          # what the JSON scanner said, or what was expected
    inside_record: bool  # True when a record was started but not finished


@dataclass
class ArrayScan:
    """Byte ranges [starts[i], ends[i]) of the complete records, and the break if there is one."""

    starts: array = field(default_factory=lambda: array("Q"))
    ends: array = field(default_factory=lambda: array("Q"))
    broken: Break | None = None


class NotUtf8(Exception):
    def __init__(self, offset: int):
        super().__init__(offset)
        self.offset = offset


class _Reader:
    """Chunks of the file as Latin-1 text, with a UTF-8 check of every byte handed out."""

    def __init__(self, handle: BinaryIO, start: int):
        handle.seek(start)
        self.handle = handle
        self.fed = start
        self.eof = False
        self._utf8 = codecs.getincrementaldecoder("utf-8")()

    def read(self, size: int) -> str:
        data = self.handle.read(size)
        if not data:
            self.eof = True
            return ""
        try:
            self._utf8.decode(data)
        except UnicodeDecodeError as exc:
            pending = len(self._utf8.getstate()[0])
            raise NotUtf8(max(self.fed - pending + exc.start, 0)) from None
        self.fed += len(data)
        return data.decode("latin-1")


def ends_early(exc: json.JSONDecodeError, text: str) -> bool:
    """Whether a parse error at the end of all the data means the data stops early."""
    if exc.msg.startswith("Unterminated string"):
        return True
    end = len(text.rstrip(" \t\n\r"))
    if "escape" in exc.msg and exc.pos >= end - 6:
        return True
    if exc.pos >= end:
        return True
    rest = text[exc.pos:end]  # a literal or a number cut short: `tru`, `1.`, `2e-`
    return any(lit.startswith(rest) for lit in _LITERALS) or _NUMBER_TAIL.fullmatch(rest) is not None


def _needs_more(exc: json.JSONDecodeError, text: str) -> bool:
    """Whether a parse error might vanish with more bytes after `text` (not at the end of file)."""
    return exc.msg.startswith("Unterminated string") or exc.pos >= len(text) - _NEED_MORE_MARGIN


def scan_array(handle: BinaryIO, start: int, total: int, progress: Progress | None = None) -> ArrayScan:
    """Index the JSON array whose opening `[` ends just before byte `start`.

    Raises NotUtf8 for bytes that are not UTF-8; every other defect ends the scan with `broken`.
    """
    decoder = json.JSONDecoder()
    out = ArrayScan()
    reader = _Reader(handle, start)
    buf, base, pos = "", start, 0   # buf[0] is byte `base` of the file
    next_report = 0

    def more(size: int = CHUNK) -> bool:
        nonlocal buf, base, pos
        if pos:
            buf, base, pos = buf[pos:], base + pos, 0
        chunk = reader.read(max(size, len(buf)))
        buf += chunk
        return bool(chunk)

    def skip_ws() -> bool:
        """Move past whitespace; False at the end of the file."""
        nonlocal pos
        while True:
            pos = _WS.match(buf, pos).end()
            if pos < len(buf):
                return True
            if not more():
                return False

    def stop(cut_off: bool, detail: str, inside: bool, at: int | None = None) -> ArrayScan:
        out.broken = Break(base + (pos if at is None else at), cut_off, detail, inside)
        return out

    while True:
        if not skip_ws():
            return stop(True, "the file ends before the closing `]`", False)
        if buf[pos] == "]":
            return out  # an empty array, or (leniently, as many writers do) a trailing comma
        while True:
            try:
                _, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if not reader.eof and _needs_more(exc, buf):
                    more()
                    continue  # parse again: positions change when the buffer moves
                if reader.eof and ends_early(exc, buf):
                    return stop(True, exc.msg, True)
                return stop(False, exc.msg, True, at=exc.pos)
            except RecursionError:
                return stop(False, "a record is nested too deeply to read", True)
            if end >= len(buf) and not reader.eof:
                more()
                continue  # a number or literal may go on in the next chunk
            break
        out.starts.append(base + pos)
        out.ends.append(base + end)
        pos = end
        if progress is not None and base + pos >= next_report:
            progress(base + pos, total)
            next_report = base + pos + (1 << 20)
        if not skip_ws():
            return stop(True, "the file ends before the closing `]`", False)
        if buf[pos] == ",":
            pos += 1
        elif buf[pos] == "]":
            return out
        else:
            return stop(False, f"expected `,` or `]` after record {len(out.starts)}", False)


def line_and_column(handle: BinaryIO, offset: int) -> tuple[int, int]:
    """1-based line and column (in bytes) of byte `offset`."""
    handle.seek(0)
    line, done, last_newline = 1, 0, -1
    while done < offset:
        chunk = handle.read(min(CHUNK, offset - done))
        if not chunk:
            break
        count = chunk.count(b"\n")
        if count:
            line += count
            last_newline = done + chunk.rindex(b"\n")
        done += len(chunk)
    return line, offset - last_newline
