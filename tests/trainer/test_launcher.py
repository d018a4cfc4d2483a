"""The run lifecycle without a trainer: start and resume prepare the run directory, then spawn."""

from __future__ import annotations

import os

import pytest

from tests.ui.fakes import FakeHandle, FakeTrainer
from tuitune.config import Config, apply_overrides, to_toml
from tuitune.errors import TuituneError
from tuitune.runs import RunDir, run_name
from tuitune.trainer import launcher
from tuitune.trainer_handle import TrainerHandle


def config(tmp_path, **overrides) -> Config:
    return apply_overrides(Config(), {"output.dir": str(tmp_path / "runs"), **overrides})


def test_start_creates_the_run_writes_its_config_once_and_spawns(tmp_path, monkeypatch):
    writes = []
    write_config = RunDir.write_config

    def counted(self, written: Config) -> None:
        writes.append(self.path)
        write_config(self, written)

    monkeypatch.setattr(RunDir, "write_config", counted)
    trainer = FakeTrainer()
    handle = launcher.start(config(tmp_path, **{"data.path": "/data/pirates.jsonl"}), spawn=trainer)
    call = trainer.calls[0]
    assert handle is trainer.handles[0] and call.resume_from is None
    assert call.run_dir.path.parent == tmp_path / "runs"
    assert call.run_dir.name.endswith("-smollm2-135m-instruct-pirates")
    assert writes == [call.run_dir.path] and call.run_dir.load_config().data.path == "/data/pirates.jsonl"


def test_the_run_name(tmp_path):
    assert run_name(Config()) == "smollm2-135m-instruct-sample"
    assert run_name(apply_overrides(Config(), {"model.name": "org/model", "data.path": "d/rows.jsonl"})) == "model-rows"
    assert run_name(apply_overrides(Config(), {"output.name": "mine"})) == "mine"


def interrupted_run(tmp_path, *steps: int) -> RunDir:
    run = RunDir.create(tmp_path / "runs", "interrupted")
    run.config_path.write_text(to_toml(config(tmp_path)), encoding="utf-8")
    for step in steps:
        (run.checkpoints_dir / f"step-{step}").mkdir()
        (run.checkpoints_dir / f"step-{step}" / "COMPLETE").write_text("")
    (run.checkpoints_dir / "step-99").mkdir()  # a checkpoint cut short: no COMPLETE marker
    return run


def test_resume_continues_from_the_last_complete_checkpoint(tmp_path):
    run = interrupted_run(tmp_path, 10, 20)
    assert run.last_checkpoint() == run.checkpoints_dir / "step-20"
    before = run.config_path.read_text()
    trainer = FakeTrainer()
    launcher.resume(run, spawn=trainer)
    assert trainer.calls[0].resume_from == str(run.checkpoints_dir / "step-20")
    assert run.config_path.read_text() == before  # nothing changed: not rewritten
    launcher.resume(run, overrides={"training.max_steps": 50, "data.salvage": None}, spawn=trainer)
    assert trainer.calls[1].config.training.max_steps == 50
    assert RunDir(run.path).load_config().training.max_steps == 50


def test_resume_is_refused_without_a_checkpoint_or_while_training(tmp_path):
    run = interrupted_run(tmp_path)
    assert run.last_checkpoint() is None
    with pytest.raises(TuituneError, match="no complete checkpoint to resume from"):
        launcher.resume(run, spawn=FakeTrainer())
    run = interrupted_run(tmp_path, 5)
    run.pid_path.write_text(str(os.getpid()))
    with pytest.raises(TuituneError, match="is still training"):
        launcher.resume(run, spawn=FakeTrainer())


def test_the_process_handle_and_the_fake_are_trainer_handles(tmp_path):
    run = RunDir.create(tmp_path / "runs", "protocol")
    assert isinstance(FakeHandle(run), TrainerHandle)
    assert isinstance(launcher.ProcessHandle(run, process=None, events_queue=None, controls_queue=None),
                      TrainerHandle)
