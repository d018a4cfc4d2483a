"""The trainer child as a launcher: torchrun's own engine (torch.distributed.run) starts the ranks of a
distributed run on this machine and watches them; this module only wires the run around it.

While the ranks train, a thread copies rank 0's events from events.jsonl to the UI's queue and the
UI's controls from the queue to controls.jsonl (rank 0 reads it and broadcasts each step). SIGTERM or
SIGINT to the launcher asks for a stop with a checkpoint; a second one stops the ranks at once. When
torchrun ends, the launcher alone writes the terminal event: rank 0's summary, or the first rank that
failed, named, with its exit code or signal and its error.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from typing import Any

from tuitune import distributed_plan as dp
from tuitune import events as ev
from tuitune.config import Config
from tuitune.runs import CONTROL_FILE, RunDir
from tuitune.trainer import rank_main
from tuitune.trainer.event_sink import EventSink

POLL_S = 0.25


class Relay(threading.Thread):
    """events.jsonl -> UI queue, UI queue -> controls.jsonl, until stopped (then one last pass)."""

    def __init__(self, run: RunDir, events_queue, controls_queue):
        super().__init__(name="tuitune-relay", daemon=True)
        self.run_dir = run
        self.events_queue = events_queue
        self.controls_queue = controls_queue
        self._parent = os.getppid()
        self._tail = ev.JsonlTail(run.events_path, from_end=True)
        self._halt = threading.Event()

    def run(self) -> None:  # noqa: D401 - threading API
        while not self._halt.wait(POLL_S):
            self.pass_once()
        self.pass_once()

    def pass_once(self) -> None:
        for event in self._tail.poll():
            self._to_ui(event)
        while self.controls_queue is not None:
            try:
                command = self.controls_queue.get_nowait()
            except Exception:  # Empty, or the UI is gone
                break
            if command in ev.CONTROLS:
                self.run_dir.send_control(command)

    def _to_ui(self, event: dict[str, Any]) -> None:
        if self.events_queue is None:
            return
        if os.getppid() != self._parent:
            self.events_queue = None
            return
        try:
            self.events_queue.put_nowait(event)
        except Exception:
            self.events_queue = None

    def finish(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def launch(config: Config, run: RunDir, sink: EventSink, controls_queue=None,
           resume_from: str | None = None) -> int:
    """Train `config` on its ranks; returns the exit code. The terminal event is emitted here."""
    layout = dp.layout_of(config)
    on_gpu = check_engine(config, layout)
    if resume_from:
        dp.check_resume(resume_from, config)
    args = dp.torchrun_args(layout, str(run.path), resume_from, run_id=run.name)
    shutil.rmtree(run.path / rank_main.STATUS_DIR, ignore_errors=True)
    controls = run.path / CONTROL_FILE
    env = {**dp.rank_env(layout, os.environ.get("CUDA_VISIBLE_DEVICES"), cpu=not on_gpu),
           rank_main.CONTROLS_OFFSET_ENV: str(controls.stat().st_size if controls.exists() else 0)}
    os.environ.update(env)
    sink.log(f"{layout.describe()}. Starting the ranks: {dp.command_text(args)}")
    if layout.node_rank > 0:
        sink.log(f"Node {layout.node_rank}: rank 0 on node 0 writes the run's events, checkpoints and adapter.")

    relay = Relay(run, sink.queue, controls_queue)
    relay.start()
    stopping = Stopping(run, sink)
    failure: BaseException | None = None
    try:
        with stopping:
            _torchrun(args)
    except Exception as exc:  # noqa: BLE001 - torchrun's ChildFailedError, SignalException, rendezvous errors
        failure = exc
    finally:
        relay.finish()
    statuses = rank_main.read_statuses(run.path)
    main = statuses.get(0, {})
    if failure is None:
        summary = main.get("summary") if main.get("state") == "finished" else None
        if summary is None:
            summary = {"steps": None, "final_loss": None, "node_rank": layout.node_rank,
                       "note": "this machine's ranks finished; node 0 holds the run"}
        sink.emit(ev.FINISHED, summary=summary)
        return 0
    sink.emit(ev.FAILED, **failure_fields(failure, statuses, layout, run))
    return 1


def check_engine(config: Config, layout: dp.Layout) -> bool:
    """Whether the ranks train on GPUs; TuituneError, before any rank starts, when this machine cannot
    run the layout."""
    import importlib.util

    import torch

    from tuitune.errors import TuituneError

    if layout.mode in dp.DEEPSPEED and importlib.util.find_spec("deepspeed") is None:
        raise TuituneError(f"training.distributed = {layout.mode} runs on DeepSpeed, which is not installed. "
                           "Install it with `pip install 'tuitune[deepspeed]'`, or pick ddp or fsdp.")
    wants_gpu = config.training.device == "cuda" or (config.training.device == "auto" and torch.cuda.is_available())
    if not wants_gpu:
        if layout.mode not in dp.CPU_MODES:
            raise TuituneError(f"training.distributed = {layout.mode} needs CUDA GPUs and none is visible here; "
                               "on the CPU ddp, zero2 and zero3 run (over gloo). `tuitune gpu` shows what is visible.")
        return False
    visible = torch.cuda.device_count()
    wanted = max(layout.device_ids) + 1 if layout.device_ids else layout.nproc_per_node
    if wanted > visible:
        raise TuituneError(f"training.gpus = {config.training.gpus} asks for {wanted} CUDA GPU(s) but {visible} "
                           "are visible here (CUDA_VISIBLE_DEVICES applies). Lower --gpus, or check `tuitune gpu`.")
    return True


def _torchrun(args: list[str]) -> None:
    from torch.distributed.run import get_args_parser, run as torchrun

    torchrun(get_args_parser().parse_args(args))


class Stopping:
    """SIGTERM/SIGINT while the ranks train: the first asks every rank for a stop after the step (with
    a checkpoint), through controls.jsonl; the second stops the ranks at once (torchrun's shutdown)."""

    def __init__(self, run: RunDir, sink: EventSink):
        self.run = run
        self.sink = sink
        self.count = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum, frame) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1:
            self.run.send_control(ev.STOP)
            self.sink.warning(f"{name} received: every rank stops after this step with a checkpoint "
                              "(send it again to stop at once).")
            return
        from torch.distributed.elastic.multiprocessing.api import SignalException

        raise SignalException(f"{name} received twice", sigval=signal.Signals(signum))


def failure_fields(failure: BaseException, statuses: dict[int, dict], layout: dp.Layout,
                   run: RunDir) -> dict[str, Any]:
    """The `failed` event for a run whose ranks did not all finish: the first failing rank, named."""
    resume = f"Resume from the newest checkpoint with `tuitune train --resume {run.path}`."
    failures = getattr(failure, "failures", None)
    if not failures:  # not a rank failure: a rendezvous error, or the launcher stopped by signals
        name = type(failure).__name__
        return {"kind": "interrupted" if name == "SignalException" else "launch",
                "message": f"The ranks did not run to the end: {name}: {failure}",
                "advice": ("Check that every machine runs the same command with its own --node-rank and can reach "
                           f"the rendezvous endpoint. {resume}") if layout.nnodes > 1 else resume}
    rank = root_cause(failure, statuses)
    pf = failures.get(rank)
    status = statuses.get(rank, {})
    fields = status.get("fields")
    if isinstance(fields, dict) and fields.get("kind") in ("input", "oom", "nan", "disk_full"):
        return {**fields, "rank": rank, "message": f"Rank {rank}: {fields.get('message', '')}"}
    if pf is None:
        how = "it stopped without a word"
    elif pf.exitcode is not None and pf.exitcode < 0:
        how = f"killed by {pf.signal_name()}"
    else:
        how = f"exit code {pf.exitcode}"
    error = status.get("error") or (pf.message if pf and pf.message and "Signal" not in str(pf.message) else "")
    if not error:
        error = ("It reported no error: it was killed from outside (for example by the kernel's out-of-memory "
                 "killer) or crashed in native code.")
    where = f"node {layout.node_rank}, " if layout.nnodes > 1 else ""
    pid = pf.pid if pf is not None else status.get("pid")
    local = f"local rank {pf.local_rank}, " if pf is not None else ""
    message = f"Rank {rank} of {layout.world_size} ({where}{local}pid {pid}) died: {how}. {error}"
    others = "The other ranks were stopped by torchrun."
    if layout.nnodes > 1:
        others += " A rank on another machine may have failed first: see that machine's run log."
    return {"kind": "rank_failed", "rank": rank, "message": message,
            "advice": f"{others} train.log holds every rank's output. {resume}"}


# What a rank says when another one vanished under it: an echo of the failure, not its cause.
ECHOES = ("connection closed", "connection reset", "remote worker", "broken pipe", "peer", "communicator was aborted",
          "watchdog caught collective operation timeout", "sigterm")


def root_cause(failure: BaseException, statuses: dict[int, dict]) -> int:
    """The rank whose failure ended the run. A rank's own error (not an echo of a lost peer) comes first;
    then a rank that died without reporting anything (killed, or a native crash: its status still says
    running), the first of those in torchrun's failures; then torchrun's first observed failure.

    Torchrun records the ranks it found dead, then stops the others and records them too, in that order
    (its timestamps are whole seconds, so they tie). A rank it stopped before that rank saw its peer go
    also still says running; the order keeps it from being taken for the one that died (2026-12-08: a
    killed rank 1 was reported as rank 0)."""
    own = sorted((s.get("ts", 0), r) for r, s in statuses.items() if s.get("state") == "failed"
                 and not any(echo in str(s.get("error") or s.get("fields")).lower() for echo in ECHOES))
    if own:
        return own[0][1]
    silent = sorted(r for r, s in statuses.items() if s.get("state") == "running")
    failures = getattr(failure, "failures", None) or {}
    seen_dead = [r for r in failures if r in silent]
    if seen_dead:
        return seen_dead[0]
    if silent:
        return silent[0]
    return failure.get_first_failure()[0]
