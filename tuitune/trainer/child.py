"""The trainer child process's entry point, `child_main`, spawned by tuitune.trainer.launcher.

Imports nothing heavy at module level: the spawned child imports this module before redirecting its
output to the run's log."""

from __future__ import annotations

import os
import sys
import traceback

from tuitune.quick_exit import freeze_at_exit


def child_main(config_data: dict, run_path: str, events_queue=None, controls_queue=None,
                resume_from: str | None = None, new_session: bool = True) -> None:
    from tuitune.runs import RunDir

    freeze_at_exit()
    run = RunDir(run_path)
    parent = os.getppid()
    if new_session:
        try:  # outlive the terminal: no SIGHUP when SSH drops, no SIGINT from the UI's ctrl+c
            os.setsid()
        except OSError:
            pass
    _redirect_output(run.log_path)
    run.pid_path.write_text(str(os.getpid()))
    try:
        exit_code = _run(config_data, run, events_queue, controls_queue, resume_from)
    finally:
        try:
            run.pid_path.unlink()
        except OSError:
            pass
        sys.stdout.flush()
        sys.stderr.flush()
    if events_queue is not None:
        events_queue.close()
        if os.getppid() == parent:
            events_queue.join_thread()  # deliver the last events to the UI before exiting
        else:
            events_queue.cancel_join_thread()  # nobody reads the pipe any more: don't wait on it
    sys.exit(exit_code)


def _redirect_output(log_path) -> None:
    log = open(log_path, "a", buffering=1, encoding="utf-8")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = log
    sys.stderr = log
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _run(config_data, run, events_queue, controls_queue, resume_from) -> int:
    from tuitune import events as ev
    from tuitune.config import config_from_dict
    from tuitune.errors import TuituneError
    from tuitune.trainer.event_sink import ControlInbox, EventSink

    sink = EventSink(run, events_queue)
    try:
        config = config_from_dict(config_data)
        if config.training.distributed != "none":  # this process launches the ranks (torchrun)
            from tuitune.trainer.rank_launcher import launch

            return launch(config, run, sink, controls_queue, resume_from)
        inbox = ControlInbox(run, controls_queue)
        from tuitune.trainer.collector_freeze import preload_training_libraries
        from tuitune.trainer.recipes import train

        preload_training_libraries()

        summary = train(config, run, sink, inbox, resume_from=resume_from)
    except TuituneError as exc:
        sink.emit(ev.FAILED, kind="input", message=exc.message, advice="Fix the input named above and start again.")
        return 2
    except BaseException as exc:  # noqa: BLE001 - the run must always end with an event
        traceback.print_exc()
        kind, advice = _classify(exc)
        sink.emit(ev.FAILED, kind=kind, message=f"{type(exc).__name__}: {exc}", advice=advice)
        return 1
    sink.emit(ev.FINISHED, summary=summary)
    return 0


def _classify(exc: BaseException) -> tuple[str, str]:
    name = type(exc).__name__
    text = str(exc)
    if name == "OutOfMemoryError" or "out of memory" in text.lower():
        return "oom", ("The GPU ran out of memory. Lower training.batch_size or model.max_seq_length, use "
                       "model.method = \"qlora\", or set training.gradient_checkpointing = \"offloaded\". "
                       "`tuitune models` shows what fits.")
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "The trainer was interrupted; resume from the last checkpoint with --resume."
    return "crash", "An unexpected error; the traceback is in the run's train.log. Resume with --resume."
