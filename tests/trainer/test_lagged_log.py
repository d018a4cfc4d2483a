"""Each step's log is taken one step late, and is exactly the log the Trainer would have written then."""

from __future__ import annotations

import math

import pytest
import transformers

from tests.trainer.test_deferred_metrics import _train
from tests.trainer.test_faults import run_training as start_training
from tests.trainer.test_faults import tiny
from tests.trainer.test_training import run_training
from tuitune import events as ev
from tuitune.trainer.deferred_metrics import sft_trainer_class
from tuitune.trainer.faults import TrainingFault
from tuitune.trainer.lagged_log import LaggedLogMixin

pytestmark = pytest.mark.timeout(400)

LOGGED = ("loss", "grad_norm", "learning_rate", "entropy", "mean_token_accuracy", "num_tokens",
          "num_input_tokens_seen", "epoch", "step")


def _lagged_steps(monkeypatch) -> list[int]:
    lagged = []
    lag = LaggedLogMixin._lag_log

    def counting(self, *args, **kwargs):
        lagged.append(self.state.global_step)
        return lag(self, *args, **kwargs)
    monkeypatch.setattr(LaggedLogMixin, "_lag_log", counting)
    return lagged


@pytest.mark.parametrize("logging_steps", [1, 2])
def test_lagged_logs_equal_the_logs_written_at_once(tiny_model_dir, tmp_path, monkeypatch, logging_steps):
    lagged = _lagged_steps(monkeypatch)
    ours, tokens = _train(sft_trainer_class(), tiny_model_dir, tmp_path / "lagged", logging_steps=logging_steps)
    assert lagged == ([1, 2, 3] if logging_steps == 1 else [2])  # the run's last step (4) is logged at once
    monkeypatch.setenv("TUITUNE_LAGGED_LOG", "0")
    lagged.clear()
    at_once, at_once_tokens = _train(sft_trainer_class(), tiny_model_dir, tmp_path / "at-once",
                                     logging_steps=logging_steps)
    assert lagged == []
    assert len(ours) == len(at_once) == 4 // logging_steps and tokens == at_once_tokens > 0
    for mine, theirs in zip(ours, at_once):
        assert set(mine) == set(theirs)
        for key in LOGGED:
            assert mine[key] == pytest.approx(theirs[key], rel=1e-6), (key, mine, theirs)


def _record(monkeypatch) -> list[tuple[str, int]]:
    order = []
    log = transformers.Trainer.log
    step_end = transformers.trainer_callback.CallbackHandler.on_step_end
    save = transformers.Trainer._save_checkpoint

    def logged(self, logs, *args, **kwargs):
        if "loss" in logs:
            order.append(("log", self.state.global_step))
        return log(self, logs, *args, **kwargs)

    def ended(self, args, state, control):
        order.append(("end", state.global_step))
        return step_end(self, args, state, control)

    def saved(self, *args, **kwargs):
        order.append(("save", self.state.global_step))
        return save(self, *args, **kwargs)
    monkeypatch.setattr(transformers.Trainer, "log", logged)
    monkeypatch.setattr(transformers.trainer_callback.CallbackHandler, "on_step_end", ended)
    monkeypatch.setattr(transformers.Trainer, "_save_checkpoint", saved)
    return order


def test_a_steps_log_comes_after_the_next_step_except_before_a_save_and_at_the_end(tiny_model_dir, tmp_path,
                                                                                    monkeypatch):
    order = _record(monkeypatch)
    run, summary, losses = run_training(tiny_model_dir, tmp_path, "lagged", **{
        "training.max_steps": 5, "training.logging_steps": 1, "training.save_steps": 3})
    assert order == [
        ("end", 1), ("end", 2), ("log", 1), ("end", 3), ("log", 2), ("log", 3), ("save", 3),
        ("end", 4), ("end", 5), ("log", 4), ("log", 5), ("save", 5)], order
    assert sorted(losses) == [1, 2, 3, 4, 5] and all(math.isfinite(v) for v in losses.values())
    steps = [e for e in run.events() if e["type"] == ev.STEP]
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5]
    assert [e["tokens_seen"] for e in steps] == sorted(e["tokens_seen"] for e in steps)


def test_the_run_logs_the_same_numbers_lagged_or_not(tiny_model_dir, tmp_path, monkeypatch):
    steps = {"training.max_steps": 6, "training.logging_steps": 1}
    lagged_run, lagged_summary, lagged = run_training(tiny_model_dir, tmp_path, "lagged", **steps)
    monkeypatch.setenv("TUITUNE_LAGGED_LOG", "0")
    plain_run, plain_summary, plain = run_training(tiny_model_dir, tmp_path, "plain", **steps)
    assert lagged == pytest.approx(plain, rel=1e-6)
    fields = ("step", "loss", "lr", "grad_norm", "tokens_seen", "epoch")
    ours = [{k: e[k] for k in fields} for e in lagged_run.events() if e["type"] == ev.STEP]
    theirs = [{k: e[k] for k in fields} for e in plain_run.events() if e["type"] == ev.STEP]
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert lagged_summary["train_loss"] == pytest.approx(plain_summary["train_loss"], rel=1e-6)


def test_a_lagged_step_whose_loss_is_not_a_number_stops_the_run_before_the_next_checkpoint(
        tiny_model_dir, tmp_path, monkeypatch):
    trainer_class = sft_trainer_class()
    real = trainer_class.compute_loss

    def spoilt(self, *args, **kwargs):
        loss = real(self, *args, **kwargs)
        return loss * float("nan") if self.state.global_step >= 2 else loss  # step 3 onwards
    monkeypatch.setattr(trainer_class, "compute_loss", spoilt)
    lagged = _lagged_steps(monkeypatch)
    config = tiny(tiny_model_dir, **{"training.max_steps": 8, "training.save_steps": 2,
                                     "training.learning_rate": 2e-3})
    run, start = start_training(config, tmp_path, "nan")
    with pytest.raises(TrainingFault) as info:
        start()
    assert 3 in lagged  # step 3's log was read when step 4 ended, which is a checkpoint step
    assert "The loss became not a number at step 3" in info.value.message
    assert [p.name for p in run.checkpoints()] == ["step-2"]  # step 4's weights are not saved
    assert not run.adapter_dir.exists()
    steps = {e["step"]: e["loss"] for e in run.events() if e["type"] == ev.STEP}
    assert steps[2] is not None and steps[3] is None and 5 not in steps


def test_a_pause_logs_the_lagged_step_first(tiny_model_dir, tmp_path, monkeypatch):
    from tuitune.trainer.event_sink import ControlInbox

    commands = iter([[], [], [ev.PAUSE], [ev.RESUME]])
    monkeypatch.setattr(ControlInbox, "drain", lambda self: next(commands, []))
    run, _, losses = run_training(tiny_model_dir, tmp_path, "paused", **{
        "training.max_steps": 5, "training.logging_steps": 1})
    seen = [(e["type"], e["step"]) for e in run.events() if e["type"] in (ev.STEP, ev.PAUSED, ev.RESUMED)]
    assert seen == [(ev.STEP, 1), (ev.STEP, 2), (ev.PAUSED, 3), (ev.RESUMED, 3), (ev.STEP, 3), (ev.STEP, 4),
                    (ev.STEP, 5)], seen


def test_tokens_per_s_of_a_lagged_run_time_each_step_and_not_its_log(tiny_model_dir, tmp_path):
    """A lagged log is written when the next step ends and the run's last log right after it: timed at
    the logs, step 5 would read about twice its speed and step 6 (the last) a hundred times."""
    run, _, _ = run_training(tiny_model_dir, tmp_path, "clock", **{"training.max_steps": 6,
                                                                  "training.logging_steps": 1})
    rates = {e["step"]: e["tokens_per_s"] for e in run.events() if e["type"] == ev.STEP}
    steady = sorted(rates[s] for s in (3, 4, 5))[1]
    assert 0.4 * steady < rates[6] < 2.5 * steady, rates
