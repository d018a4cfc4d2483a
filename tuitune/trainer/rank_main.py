"""One rank of a distributed run, as torchrun starts it: `python -m tuitune.trainer.rank_main RUN [--resume CKPT]`.

The rank reads the run's config.toml and trains with the recipe. Rank 0 writes events.jsonl, checkpoints
and the adapter; the others write nothing but their status file (.ranks/rank-N.json), which the
launcher reads to say how the run ended and which rank failed first. Terminal events (finished,
failed) come from the launcher alone, so a run has exactly one.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from tuitune.quick_exit import freeze_at_exit

STATUS_DIR = ".ranks"
CONTROLS_OFFSET_ENV = "TUITUNE_CONTROLS_OFFSET"  # where rank 0 starts reading controls.jsonl


def status_path(run_path: str | Path, rank: int) -> Path:
    return Path(run_path) / STATUS_DIR / f"rank-{rank}.json"


def write_status(run_path: str | Path, rank: int, state: str, **fields: Any) -> None:
    from tuitune.paths import atomic_write_text

    record = {"rank": rank, "state": state, "pid": os.getpid(), "host": socket.gethostname(),
              "ts": time.time(), **fields}
    atomic_write_text(status_path(run_path, rank), json.dumps(record, default=str))


def read_statuses(run_path: str | Path) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for path in (Path(run_path) / STATUS_DIR).glob("rank-*.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            found[int(record["rank"])] = record
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def _inbox(run, rank: int):
    from tuitune import events as ev
    from tuitune.runs import CONTROL_FILE
    from tuitune.trainer.distributed import BroadcastInbox
    from tuitune.trainer.event_sink import ControlInbox

    if rank != 0:
        return BroadcastInbox(None, rank)
    inbox = ControlInbox(run)
    offset = os.environ.get(CONTROLS_OFFSET_ENV)
    if offset and offset.isdigit():  # controls sent while the ranks were starting count too
        inbox._file = ev.JsonlTail(run.path / CONTROL_FILE)  # noqa: SLF001
        inbox._file._offset = int(offset)  # noqa: SLF001
    return BroadcastInbox(inbox, rank)


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(_main)(argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="tuitune.trainer.rank_main")
    parser.add_argument("run")
    parser.add_argument("--resume", default=None)
    args = parser.parse_args(argv)
    freeze_at_exit()
    rank = int(os.environ.get("RANK", "0"))
    write_status(args.run, rank, "running")

    from tuitune.errors import TuituneError
    from tuitune.runs import RunDir
    from tuitune.trainer.event_sink import EventSink

    run = RunDir(args.run)
    try:
        config = run.load_config()
        from tuitune.trainer.distributed import SilentSink
        from tuitune.trainer.collector_freeze import preload_training_libraries
        from tuitune.trainer.recipes import train

        preload_training_libraries()

        sink = EventSink(run, None) if rank == 0 else SilentSink(run, rank)
        summary = train(config, run, sink, _inbox(run, rank), resume_from=args.resume)
    except TuituneError as exc:
        fields = exc.event_fields() if hasattr(exc, "event_fields") else {
            "kind": "input", "message": exc.message, "advice": "Fix the input named above and start again."}
        write_status(args.run, rank, "failed", fields=fields)
        print(f"rank {rank}: {exc.message}", file=sys.stderr, flush=True)
        raise
    except BaseException as exc:
        traceback.print_exc()
        write_status(args.run, rank, "failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    write_status(args.run, rank, "finished", summary=summary if rank == 0 else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
