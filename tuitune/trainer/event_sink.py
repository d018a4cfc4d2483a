"""The trainer's outbox: every event goes to events.jsonl and, while the parent lives, to the queue."""

from __future__ import annotations

import os
import queue as queue_module
from typing import Any

from tuitune import events as ev
from tuitune.runs import CONTROL_FILE, RunDir


class EventSink:
    def __init__(self, run: RunDir, events_queue=None):
        self.run = run
        self.queue = events_queue
        self._parent = os.getppid()
        self.write_error: str | None = None  # why the last event could not reach events.jsonl

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = ev.make(type_, **fields)
        try:
            self.run.append_event(event)
        except OSError as exc:  # a full disk or a deleted run folder must not end the run
            first = self.write_error is None
            self.write_error = f"{exc.strerror or exc}"
            if first:  # said once, over the queue (the file cannot take it), to the UI's toast
                print(f"tuitune: cannot write {self.run.events_path}: {exc}", flush=True)
                self._send(event)
                self._send(ev.make(ev.WARNING, notify=True, text=(
                    f"Cannot write {self.run.events_path} ({self.write_error}): training goes on and "
                    "events still reach this screen, but the run's record on disk stops here until "
                    "the file can be written again (free space on that disk).")))
                return event
        else:
            self.write_error = None
        self._send(event)
        return event

    def _send(self, event: dict[str, Any]) -> None:
        if self.queue is not None:
            if os.getppid() != self._parent:  # the UI is gone: the file alone keeps the record
                self.queue = None
            else:
                try:
                    self.queue.put_nowait(event)
                except (queue_module.Full, OSError, ValueError):
                    self.queue = None

    def log(self, text: str, level: str = "info") -> None:
        self.emit(ev.LOG, level=level, text=text)

    def warning(self, text: str) -> None:
        self.emit(ev.WARNING, text=text)


class ControlInbox:
    """Controls from the controls queue and from the run's controls.jsonl (for detached runs)."""

    def __init__(self, run: RunDir, controls_queue=None):
        self.queue = controls_queue
        self._file = ev.JsonlTail(run.path / CONTROL_FILE, from_end=True)

    def drain(self) -> list[str]:
        found: list[str] = []
        if self.queue is not None:
            while True:
                try:
                    item = self.queue.get_nowait()
                except queue_module.Empty:
                    break
                except (OSError, ValueError, EOFError):
                    self.queue = None
                    break
                if item in ev.CONTROLS:
                    found.append(item)
        found.extend(entry.get("control") for entry in self._file.poll()
                     if entry.get("control") in ev.CONTROLS)
        return found
