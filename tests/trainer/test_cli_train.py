"""`tuitune train` and `tuitune runs` as a user runs them, in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tuitune.errors import TuituneError
from tuitune.model_source import resolve_model_source

pytestmark = pytest.mark.timeout(300)


def tuitune(*args, env_extra=None, timeout=240):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "tuitune", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def test_headless_train_then_runs(tiny_model_dir, tmp_path):
    out = tmp_path / "runs"
    result = tuitune("train", "--model", str(tiny_model_dir), "--max-steps", "3", "--output", str(out),
                     "--name", "cli-run", "--set", "training.gradient_accumulation_steps=1",
                     "--set", "model.max_seq_length=64", "--set", "training.optimizer=adamw_torch")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "finished: 3 steps" in result.stdout
    assert "step 3/3" in result.stdout and "loss" in result.stdout
    adapter_line = [l for l in result.stdout.splitlines() if l.startswith("adapter: ")][0]
    assert os.path.isdir(adapter_line.split(": ", 1)[1])
    listing = tuitune("runs", "--output", str(out))
    assert listing.returncode == 0
    row = [l for l in listing.stdout.splitlines() if "cli-run" in l][0]
    assert "finished" in row and "3/3" in row


def test_headless_train_fails_cleanly_on_bad_data(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"foo": 1}\n{"foo": 2}\n')
    result = tuitune("train", "--model", str(tiny_model_dir), "--data", str(bad), "--max-steps", "1",
                     "--output", str(tmp_path / "runs"))
    assert result.returncode == 1
    assert "bad.jsonl" in result.stderr and "Traceback" not in result.stderr


def test_offline_hub_name_fails_at_once_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from tuitune.model_source import local_folder

    source = resolve_model_source("someorg/some-model-that-is-not-cached")
    assert source.kind == "hub"
    with pytest.raises(TuituneError, match="offline") as info:
        local_folder(source)
    assert "--model" in str(info.value)


def test_model_sources(tmp_path, tiny_model_dir):
    assert resolve_model_source("smollm2-135m-instruct").kind == "embedded"
    assert resolve_model_source(str(tiny_model_dir)).kind == "folder"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model_source(str(gguf)).kind == "gguf"
    assert resolve_model_source(str(tmp_path)).kind == "gguf"  # a folder holding one .gguf
    with pytest.raises(TuituneError, match="does not exist"):
        resolve_model_source(str(tmp_path / "missing"))
    with pytest.raises(TuituneError, match="not a .gguf model"):
        resolve_model_source(str(tmp_path / "x.txt")) if (tmp_path / "x.txt").write_text("x") else None
    with pytest.raises(TuituneError, match="Unknown model"):
        resolve_model_source("not-a-model")


def test_headless_qlora_on_the_cpu(tiny_model_dir, tmp_path):
    result = tuitune("train", "--model", str(tiny_model_dir), "--method", "qlora", "--max-steps", "2",
                     "--output", str(tmp_path / "runs"), "--set", "training.gradient_accumulation_steps=1",
                     "--set", "model.max_seq_length=64")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "QLORA" in result.stdout and "finished: 2 steps" in result.stdout


def test_detached_run_outlives_the_command(tiny_model_dir, tmp_path):
    from tests.helpers import wait_until
    from tuitune.runs import list_runs

    out = tmp_path / "runs"
    result = tuitune("train", "--model", str(tiny_model_dir), "--max-steps", "4", "--output", str(out),
                     "--set", "training.gradient_accumulation_steps=1", "--detach", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "training in the background" in result.stdout
    info = wait_until(lambda: next((r for r in list_runs(out) if r.status in ("finished", "failed")), None),
                      timeout=240, interval=1)
    assert info.status == "finished" and info.step == 4, info


def test_detach_returns_at_once_with_its_output_piped(tiny_model_dir, tmp_path):
    """`tuitune train --detach | cat`: nothing the command starts keeps its pipes open for the run."""
    from tests.helpers import wait_until
    from tuitune import events as ev
    from tuitune.runs import RunDir

    out = tmp_path / "runs"
    began = time.monotonic()
    command = subprocess.Popen(
        [sys.executable, "-m", "tuitune", "train", "--model", str(tiny_model_dir), "--max-steps", "2000",
         "--output", str(out), "--set", "training.gradient_accumulation_steps=1",
         "--set", "model.max_seq_length=64", "--set", "training.optimizer=adamw_torch", "--detach"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        try:
            stdout, stderr = command.communicate(timeout=60)  # reads both pipes to their end
        except subprocess.TimeoutExpired:
            command.kill()
            pytest.fail("`tuitune train --detach` with piped output did not return within 60 s: a child "
                        "kept the pipes open")
        returned_after = time.monotonic() - began
        assert command.returncode == 0, stdout + stderr
        assert "training in the background" in stdout
        run = RunDir(next(out.iterdir()))
        assert run.is_live(), f"the run is not training after the command returned:\n{stdout}{stderr}"
        assert returned_after < 30, f"the command took {returned_after:.1f} s"
        # the run goes on without the command: it reaches its first steps after the pipes closed
        wait_until(lambda: run.info().step >= 1, timeout=240, interval=0.5)
        assert run.info().status == "running"
        run.send_control(ev.STOP)
        wait_until(lambda: not run.is_live(), timeout=120, interval=0.5)
        assert run.info().status == "stopped"
    finally:
        command.stdout.close()
        command.stderr.close()
        for path in out.iterdir() if out.exists() else ():
            if RunDir(path).is_live():
                os.kill(RunDir(path).trainer_pid(), signal.SIGKILL)
