"""Which rank a failed distributed run names: the one that failed, not one torchrun stopped after it."""

from __future__ import annotations

from types import SimpleNamespace

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from tuitune.trainer.rank_launcher import root_cause


def _failure(*ranks_in_order: int, timestamp: int = 1_700_000_000) -> ChildFailedError:
    """torchrun's error, its ranks in the order it recorded them (their timestamps whole seconds, tied)."""
    failures = {}
    for rank in ranks_in_order:
        failure = ProcessFailure(local_rank=rank, pid=1000 + rank, exitcode=-9, error_file="")
        failure.timestamp = timestamp
        failures[rank] = failure
    return ChildFailedError("tuitune", failures)


RUNNING = {"state": "running"}


def test_a_killed_rank_is_named_before_the_rank_torchrun_stopped_after_it():
    statuses = {0: dict(RUNNING), 1: dict(RUNNING)}  # neither wrote a word: one killed, one stopped
    assert root_cause(_failure(1, 0), statuses) == 1
    assert root_cause(_failure(0, 1), statuses) == 0


def test_a_ranks_own_error_comes_before_a_silent_rank_and_an_echo_does_not():
    statuses = {0: {"state": "failed", "ts": 5, "error": "RuntimeError: Connection closed by peer"},
                1: {"state": "failed", "ts": 7, "error": "ValueError: row 12 has no text"},
                2: dict(RUNNING)}
    assert root_cause(_failure(2, 0, 1), statuses) == 1
    del statuses[1]
    assert root_cause(_failure(0, 2), statuses) == 2  # rank 0 only echoes rank 2's death


def test_without_statuses_torchruns_first_failure_is_named():
    failure = _failure(1, 0)
    failure.failures[0].timestamp -= 1
    assert root_cause(failure, {}) == 0
    assert root_cause(SimpleNamespace(failures={}, get_first_failure=lambda: (3, None)), {}) == 3
