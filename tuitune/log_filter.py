"""What of the trainer's output a user needs to see on the Monitor: tuitune's warnings and real errors,
not library deprecation notices or progress bars (those stay in the run's train.log, unfiltered).

Pure Python; the Monitor passes the new lines of train.log through a `LogFilter` (in
tuitune.run_feed.LogTail), and the trainer keeps library log records that are only deprecation
notices out of the run's events (`keep_library_record`).
"""

from __future__ import annotations

import logging
import re
from typing import Iterable

# `path/to/file.py:123: FutureWarning: text` as Python's warnings module prints it.
_WARNING_LINE = re.compile(r"^(?P<path>.*?\.py):\d+: (?P<category>[A-Za-z_]*Warning): ")
NOISE_CATEGORIES = frozenset({"FutureWarning", "DeprecationWarning", "PendingDeprecationWarning"})
_DEPRECATION_TEXT = re.compile(r"\bdeprecated\b|will be removed in|\bis deprecated\b|FutureWarning",
                               re.IGNORECASE)
_ERROR_LINE = re.compile(r"^\s*[\w.]*(Error|Exception)\b")  # an exception's line is never noise
_INSTALLED = re.compile(r"/(?:site|dist)-packages/")
# Library notices known to be harmless here (bitsandbytes on a CPU looks for an optional package).
_HARMLESS = re.compile(r"^Failed to load CPU \w+ from kernels-community")
# tqdm-style progress: `Map: 100%|█████| 285/285 [00:00<00:00, 7539.00 examples/s]`
_PROGRESS = re.compile(r"\d+%\|.*\|\s*\d+/\d+\s*\[|\d+(\.\d+)?\s*(it|examples|ba|B)/s\]")


def is_deprecation_notice(text: str) -> bool:
    """A log message that only says some API is deprecated."""
    return bool(_DEPRECATION_TEXT.search(text))


def keep_library_record(logger: str, level: int, text: str) -> bool:
    """Whether a log record of `logger` belongs in the run's events: tuitune's own always; a
    library's unless it only says some API is deprecated (that stays in train.log)."""
    if logger == "tuitune" or logger.startswith("tuitune."):
        return True
    return level >= logging.ERROR or not is_deprecation_notice(text)


def _is_own(path: str) -> bool:
    """A source file of tuitune (installed or a checkout), not of a library installed under a
    folder that happens to be called tuitune."""
    path = path.replace("\\", "/")
    installed = _INSTALLED.split(path)
    if len(installed) > 1:
        return installed[-1].startswith("tuitune/")
    return "/tuitune/" in path


class LogFilter:
    """Feed it train.log lines in order; it returns the ones worth showing. Stateful: the source
    line Python prints under a warning goes with that warning."""

    def __init__(self) -> None:
        self._drop_source_line = False
        self.dropped = 0

    def keep(self, line: str) -> bool:
        if self._drop_source_line:
            self._drop_source_line = False
            if line.startswith((" ", "\t")):
                self.dropped += 1
                return False
        if not line.strip():
            return False
        match = _WARNING_LINE.match(line)
        if match:
            noise = (match.group("category") in NOISE_CATEGORIES
                     and not _is_own(match.group("path")))
            if noise:
                self._drop_source_line = True
                self.dropped += 1
                return False
            return True
        deprecation = is_deprecation_notice(line) and not _ERROR_LINE.match(line)
        if deprecation or _PROGRESS.search(line) or _HARMLESS.match(line):
            self.dropped += 1
            return False
        return True

    def lines(self, lines: Iterable[str]) -> list[str]:
        return [line for line in lines if self.keep(line)]
