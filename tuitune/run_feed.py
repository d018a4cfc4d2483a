"""Where a followed run's news comes from: events from a trainer handle or from events.jsonl, the
new lines of train.log worth showing (tuitune.log_filter), and trouble with the run's folder
(RunWatch: deleted, unreadable or torn event lines). Pure Python; the Monitor reads these in a
thread worker."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Protocol

from tuitune import events as ev
from tuitune.log_filter import LogFilter
from tuitune.runs import RunDir
from tuitune.trainer_handle import TrainerHandle

LOG_TAIL_BYTES = 64_000   # how much of an existing train.log is shown when a run is opened


def event_key(event: dict[str, Any]) -> tuple:
    return (event.get("type"), event.get("ts"), event.get("step"))


class EventSource(Protocol):
    """Where a run's events come from and where its controls go."""

    live: bool

    def read(self, timeout: float) -> list[dict[str, Any]]: ...

    def give_back(self, events: list[dict[str, Any]]) -> None: ...

    def control(self, command: str) -> None: ...

    def is_alive(self) -> bool: ...


class HandleSource:
    """A run started by this UI: events from the trainer handle's queue, controls to the handle.

    `skip` holds the keys of events already shown from disk, which the queue delivers again."""

    live = True

    def __init__(self, handle: TrainerHandle, skip: set[tuple] | None = None) -> None:
        self.handle = handle
        self.skip = skip or set()
        self._controls = {ev.PAUSE: handle.pause, ev.RESUME: handle.resume, ev.STOP: handle.stop,
                          ev.SAVE_NOW: handle.save_now}

    def read(self, timeout: float) -> list[dict[str, Any]]:
        found = _take_back(self.handle) or self.handle.poll(timeout=timeout)
        if self.skip:
            found = [e for e in found if event_key(e) not in self.skip]
        return found

    def give_back(self, events: list[dict[str, Any]]) -> None:
        """Events a reader took off the queue but will not show (it was replaced by another reader of
        the same handle): the next `read` of any source of this handle returns them first."""
        if events:
            with _RETURNED_LOCK:
                _RETURNED.setdefault(id(self.handle), []).extend(events)

    def control(self, command: str) -> None:
        self._controls[command]()

    def is_alive(self) -> bool:
        return self.handle.is_alive()


# A handle's queue has one consumer at a time, but a Monitor that opens the same run again replaces
# its reader while the old one may be blocked on the queue: what the old one took is handed on here.
_RETURNED: dict[int, list[dict[str, Any]]] = {}
_RETURNED_LOCK = threading.Lock()


def _take_back(handle: TrainerHandle) -> list[dict[str, Any]]:
    with _RETURNED_LOCK:
        return _RETURNED.pop(id(handle), [])


class FileSource:
    """Any other run: events tailed from events.jsonl, controls written to the control file."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.tail = ev.JsonlTail(run.events_path)
        self.live = run.is_live()

    def read(self, timeout: float) -> list[dict[str, Any]]:
        found = [event for event in self.tail.poll() if "type" in event]
        if not found and timeout > 0:
            time.sleep(timeout)
        return found

    def give_back(self, events: list[dict[str, Any]]) -> None:
        """Nothing to hand on: a new reader of the file replays it from the start."""

    def control(self, command: str) -> None:
        self.run.send_control(command)

    def is_alive(self) -> bool:
        return self.run.is_live()


class LogTail:
    """New complete lines of a text file since the last call (carriage-return progress collapsed)
    that `keep` lets through (default: a LogFilter, so library deprecation notices and progress
    bars stay in the file); the first call starts at most LOG_TAIL_BYTES before the end."""

    def __init__(self, path: Path, keep: LogFilter | None = None) -> None:
        self.path = path
        self.offset: int | None = None
        self.partial = ""
        self.filter = keep if keep is not None else LogFilter()

    def read(self) -> list[str]:
        try:
            with open(self.path, "rb") as handle:
                if self.offset is None:
                    handle.seek(0, 2)
                    size = handle.tell()
                    self.offset = max(0, size - LOG_TAIL_BYTES)
                handle.seek(self.offset)
                chunk = handle.read()
                self.offset = handle.tell()
        except OSError:
            return []
        text = self.partial + chunk.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self.partial = lines.pop()
        found = [line.split("\r")[-1].rstrip() for line in lines if line.split("\r")[-1].strip()]
        return self.filter.lines(found)


class RunWatch:
    """Trouble with a followed run's folder, each said once as a sentence for a toast and the log:
    the folder deleted, lines of events.jsonl that are not events, a torn last line once the run
    has ended. `tail` is the events.jsonl tail of a run read from disk (None for a live handle)."""

    def __init__(self, run: RunDir, tail: ev.JsonlTail | None = None) -> None:
        self.run = run
        self.tail = tail
        self._said: set[str] = set()
        self._skipped = 0

    def check(self, *, ended: bool, alive: bool) -> list[str]:
        notices: list[str] = []
        if "deleted" not in self._said and not self.run.path.exists():
            self._said.add("deleted")
            notices.append(f"The run folder {self.run.path} was deleted. " + (
                "The trainer still runs and its events still arrive here, but nothing more of "
                "this run is saved on disk." if alive else "What was shown stays until you leave."))
        if self.tail is not None and self.tail.skipped > self._skipped:
            count, self._skipped = self.tail.skipped - self._skipped, self.tail.skipped
            notices.append(f"{count} line(s) of {self.run.events_path} are not events (damaged, or "
                           "written by something else) and were skipped; the rest is shown.")
        if ended and self.tail is not None and self.tail.torn and "torn" not in self._said:
            self._said.add("torn")
            notices.append(f"The last line of {self.run.events_path} is cut off (the trainer "
                           "stopped while writing it); the events before it are shown.")
        return notices
