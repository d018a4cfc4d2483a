"""Run an export in a spawned child process (the Export screen's path): progress, result or error come
back over a queue as small dicts; the child's own output goes to a log file, never the UI's terminal.

Pure Python at import time; the child imports torch. Create handles outside Textual's redirected
stderr (multiprocessing cannot hand it to a child; tuitune.trainer.launcher does the same):
`start_export` does that itself.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue as queue_module
import sys
import time
from pathlib import Path

from tuitune.export.formats import ExportRequest
from tuitune.quick_exit import freeze_at_exit

PROGRESS, DONE, FAILED = "progress", "done", "failed"


class ExportHandle:
    """The parent's view of one export child."""

    def __init__(self, process, events, log_path: Path):
        self.process = process
        self.events = events
        self.log_path = log_path
        self.finished = False

    def poll(self, timeout: float = 0.0) -> list[dict]:
        """Messages since the last poll; waits up to `timeout` for the first one."""
        found = []
        try:
            found.append(self.events.get(timeout=timeout) if timeout else self.events.get_nowait())
            while True:
                found.append(self.events.get_nowait())
        except queue_module.Empty:
            pass
        if any(m["kind"] in (DONE, FAILED) for m in found):
            self.finished = True
        elif not found and not self.process.is_alive() and not self.finished:
            self.finished = True  # died without a word (killed, out of memory)
            found.append({"kind": FAILED, "message": f"The export process ended unexpectedly (exit code "
                                                     f"{self.process.exitcode}); see {self.log_path}."})
        return found

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def cancel(self) -> None:
        """Stop the child; the half-written temporary folder is left for the next export to replace."""
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(5)


def start_export(request: ExportRequest, log_path: Path) -> ExportHandle:
    context = multiprocessing.get_context("spawn")
    with contextlib.redirect_stderr(sys.__stderr__):
        events = context.Queue()
        process = context.Process(target=child_main, args=(request.to_dict(), events, str(log_path)),
                                  name="tuitune-export", daemon=True)
        process.start()
    return ExportHandle(process, events, log_path)


def child_main(request: dict, events, log_path: str) -> None:
    import os
    import traceback

    freeze_at_exit()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "a", buffering=1, encoding="utf-8")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.2 or fraction >= 1.0:  # a few redraws a second at most
            last[0] = now
            events.put({"kind": PROGRESS, "fraction": fraction, "message": message})

    from tuitune.errors import TuituneError
    from tuitune.export.runner import run_export

    try:
        result = run_export(ExportRequest(**request), progress)
        events.put({"kind": DONE, "result": result.to_dict()})
    except TuituneError as exc:
        events.put({"kind": FAILED, "message": str(exc)})
    except BaseException as exc:  # reported, never a traceback in the UI; the log keeps it
        traceback.print_exc()
        events.put({"kind": FAILED, "message": f"{type(exc).__name__}: {exc} (details in {log_path})"})
    finally:
        log.flush()
