"""Kill and resume: a headless trainer killed with SIGKILL at an arbitrary step shows as failed
(not running) in `tuitune runs`, with its last checkpoint named; `tuitune train --resume` continues
from that checkpoint and its later per-step losses equal those of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import wait_until
from tests.trainer.test_cli_train import tuitune
from tuitune import events as ev
from tuitune.runs import RunDir, list_runs
from tuitune.trainer.event_sink import ControlInbox, EventSink
from tuitune.trainer.sft import train

pytestmark = pytest.mark.timeout(400)

MAX_STEPS = 16


def losses(run: RunDir) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in run.events() if e["type"] == ev.STEP}


def test_sigkill_then_resume_reproduces_the_uninterrupted_losses(tiny_model_dir, tmp_path):
    out = tmp_path / "runs"
    # The CLI's output goes to a file that a failure message can quote. (A pipe works too since the
    # --detach fix; tests/trainer/test_cli_train.py holds that.)
    with open(tmp_path / "detach.err", "w") as errors:
        started = subprocess.run(
            [sys.executable, "-m", "tuitune", "train", "--model", str(tiny_model_dir), "--max-steps",
             str(MAX_STEPS), "--output", str(out), "--name", "killed", "--detach",
             "--set", "training.gradient_accumulation_steps=1", "--set", "training.batch_size=2",
             "--set", "training.save_steps=2", "--set", "training.seed=5",
             "--set", "training.optimizer=adamw_torch", "--set", "model.max_seq_length=64",
             "--set", "training.use_kernels=false"],
            stdout=errors, stderr=errors, stdin=subprocess.DEVNULL, text=True, timeout=120)
    assert started.returncode == 0, (tmp_path / "detach.err").read_text()
    run = RunDir(next(out.iterdir()))

    # Kill it at whatever step it has reached once a checkpoint exists: no warning, no cleanup.
    wait_until(lambda: run.last_checkpoint() is not None and run.trainer_pid(), timeout=240, interval=0.2)
    os.kill(run.trainer_pid(), signal.SIGKILL)
    wait_until(lambda: not run.is_live(), timeout=30)
    killed_at = max(losses(run))
    assert killed_at < MAX_STEPS, "the run finished before it was killed"
    assert run.pid_path.exists()  # a SIGKILL leaves it: the status must not say running
    checkpoint = run.last_checkpoint()

    info = list_runs(out)[0]
    assert info.status == "failed" and checkpoint.name in info.error
    listing = tuitune("runs", "--output", str(out))
    row = next(line for line in listing.stdout.splitlines() if run.name in line)
    assert "failed" in row and "running" not in row
    assert f"Last checkpoint: {checkpoint.name}" in listing.stdout
    assert f"tuitune train --resume {run.name}" in listing.stdout

    resumed = tuitune("train", "--resume", run.name, "--output", str(out), timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {checkpoint}" in resumed.stdout
    assert list_runs(out)[0].status == "finished"
    after_kill = losses(run)  # the resumed steps overwrite the killed run's record of them

    # The same config, uninterrupted, in this process.
    config = run.load_config()
    straight = RunDir.create(tmp_path / "straight", "straight")
    straight.write_config(config)
    train(config, straight, EventSink(straight), ControlInbox(straight))
    expected = losses(straight)
    first = int(checkpoint.name.split("-")[1]) + 1
    resumed_steps = [e["step"] for e in run.events() if e["type"] == ev.STEP and e["ts"] > info.last_event["ts"]]
    assert resumed_steps == list(range(first, MAX_STEPS + 1))
    for step in resumed_steps:
        assert after_kill[step] == pytest.approx(expected[step], abs=1e-5), step
