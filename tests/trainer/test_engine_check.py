"""A distributed rank says which engine the Trainer set up, and fails when it is not the mode asked for
(e.g. an Accelerate that ignores the FSDP plugin would otherwise train every rank on a whole copy)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tuitune import events as ev
from tuitune.errors import TuituneError
from tuitune.runs import RunDir
from tuitune.trainer.distributed import RankContext, RankEventsCallback, engine_in_use
from tuitune.trainer.event_sink import ControlInbox, EventSink


class _ZeroEngine(torch.nn.Module):
    def zero_optimization_stage(self) -> int:
        return 3


def _trainer(wrapped, fsdp2: bool = False, distributed_type: str = "DistributedType.MULTI_CPU"):
    state = SimpleNamespace(distributed_type=distributed_type)
    return SimpleNamespace(model_wrapped=wrapped, accelerator=SimpleNamespace(is_fsdp2=fsdp2, state=state))


def test_the_engine_is_read_from_what_the_trainer_prepared():
    plain = torch.nn.Linear(2, 2)
    assert engine_in_use(_trainer(_ZeroEngine())) == "zero3"
    assert engine_in_use(_trainer(plain, fsdp2=True)) == "fsdp"
    assert engine_in_use(_trainer(plain, distributed_type="DistributedType.FSDP")) == "fsdp1"
    assert engine_in_use(_trainer(plain)) == "none"


def _callback(tmp_path, mode: str, rank: int = 0):
    run = RunDir.create(tmp_path / "runs", "r")
    callback = RankEventsCallback(run, EventSink(run), ControlInbox(run), save_total_limit=2, samples_per_step=2,
                                  rank=RankContext(mode, rank, rank, 2))
    return run, callback


def test_a_rank_on_the_wrong_engine_fails_with_what_was_asked(tmp_path):
    run, callback = _callback(tmp_path, "zero3")
    callback.trainer = _trainer(torch.nn.Linear(2, 2))
    with pytest.raises(TuituneError, match="zero3 asked for DeepSpeed ZeRO-3 on 2 ranks, but the Trainer set up "
                                           "no distributed engine"):
        callback._check_engine()


def test_rank_0_names_the_engine_and_other_ranks_stay_silent(tmp_path):
    run, callback = _callback(tmp_path, "zero3")
    callback.trainer = _trainer(_ZeroEngine())
    callback._check_engine()
    assert [e["text"] for e in run.events() if e["type"] == ev.LOG] == ["Engine: DeepSpeed ZeRO-3 on 2 ranks."]
    other_run, other = _callback(tmp_path / "b", "zero3", rank=1)
    other.trainer = _trainer(_ZeroEngine())
    other._check_engine()
    assert not other_run.events()
