"""A real trainer process driven through its queues: start, steps, pause, resume, stop, checkpoint."""

from __future__ import annotations

import time

import pytest

from tuitune import events as ev
from tuitune.config import Config, apply_overrides
from tuitune.runs import RunDir, list_runs
from tuitune.trainer.launcher import start, wait_for

pytestmark = pytest.mark.timeout(300)


def tiny_config(model_dir, tmp_path, **extra) -> Config:
    overrides = {"model.name": str(model_dir), "output.dir": str(tmp_path / "runs"),
                 "training.batch_size": 2, "training.gradient_accumulation_steps": 1,
                 "training.learning_rate": 5e-3, "training.optimizer": "adamw_torch",
                 "model.max_seq_length": 96, "training.warmup_steps": 0, **extra}
    return apply_overrides(Config(), overrides)


def steps_of(events):
    return [e for e in events if e["type"] == ev.STEP]


def test_pause_resume_stop_and_checkpoint(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, tmp_path, **{"training.max_steps": 400})
    handle = start(config)
    try:
        seen = wait_for(handle, lambda e: e["type"] == ev.STEP and e["step"] >= 2, timeout=120)
        assert steps_of(seen), f"no step events; got {[e['type'] for e in seen]}; log: {handle.run_dir.log_path.read_text()[-2000:]}"
        started = [e for e in seen if e["type"] == ev.STARTED]
        assert started and started[0]["trainable_params"] > 0 and started[0]["method"] == "lora"

        handle.pause()
        seen = wait_for(handle, lambda e: e["type"] == ev.PAUSED, timeout=30)
        paused_at = [e for e in seen if e["type"] == ev.PAUSED][0]["step"]
        time.sleep(1.5)
        assert not [e for e in handle.poll() if e["type"] == ev.STEP], "steps continued while paused"

        handle.save_now()  # while paused: the checkpoint is written at once
        seen = wait_for(handle, lambda e: e["type"] == ev.CHECKPOINT, timeout=60)
        assert [e for e in seen if e["type"] == ev.CHECKPOINT][0]["step"] == paused_at

        handle.resume()
        seen = wait_for(handle, lambda e: e["type"] == ev.STEP and e["step"] > paused_at + 1, timeout=60)
        assert any(e["type"] == ev.RESUMED for e in seen)

        handle.stop()
        seen = wait_for(handle, lambda e: e["type"] in ev.TERMINAL, timeout=120)
        final = seen[-1]
        assert final["type"] == ev.FINISHED, final
        summary = final["summary"]
        assert summary["stopped"] is True and summary["steps"] < 400
        assert handle.join(timeout=60) == 0
    finally:
        handle.terminate()

    run = handle.run_dir
    checkpoints = run.checkpoints()
    assert [p.name for p in checkpoints][-1] == f"step-{summary['steps']}"
    last = checkpoints[-1]
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"):
        assert (last / name).exists(), name
    assert any(last.glob("rng_state*.pth"))
    assert (run.adapter_dir / "adapter_model.safetensors").exists()
    assert (run.adapter_dir / "tokenizer.json").exists() and (run.adapter_dir / "tuitune.toml").exists()
    # Everything the queue carried is also on disk, in order.
    disk = [e["type"] for e in run.events()]
    assert disk[-1] == ev.FINISHED and ev.PAUSED in disk and ev.RESUMED in disk
    info = list_runs(tmp_path / "runs")[0]
    assert info.status == "stopped" and info.final_loss is not None
    assert not run.pid_path.exists()


def test_file_controls_reach_a_detached_run(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, tmp_path, **{"training.max_steps": 400})
    handle = start(config)
    try:
        wait_for(handle, lambda e: e["type"] == ev.STEP, timeout=120)
        run = RunDir.open(handle.run_dir.name, tmp_path / "runs")
        assert run.is_live()
        run.send_control(ev.STOP)  # what the TUI does for a run it did not start
        seen = wait_for(handle, lambda e: e["type"] in ev.TERMINAL, timeout=120)
        assert seen[-1]["type"] == ev.FINISHED and seen[-1]["summary"]["stopped"]
    finally:
        handle.terminate()


def test_bad_input_ends_in_a_failed_event(tmp_path):
    config = apply_overrides(Config(), {"model.name": str(tmp_path / "missing-model"),
                                        "output.dir": str(tmp_path / "runs")})
    handle = start(config)
    seen = wait_for(handle, lambda e: e["type"] in ev.TERMINAL, timeout=120)
    handle.join(timeout=30)
    failed = seen[-1]
    assert failed["type"] == ev.FAILED and failed["kind"] == "input"
    assert "missing-model" in failed["message"] and "does not exist" in failed["message"]
    assert list_runs(tmp_path / "runs")[0].status == "failed"
