"""The test harness's own rules (tests/conftest.py): full-size GPU shapes leave xdist workers alone, and
a run can report each test as it finishes."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch

from tests import conftest
from tests.kernels.kernel_env import ON_GPU, gpu_shapes


def _item(*marks):
    return SimpleNamespace(get_closest_marker=lambda name: name if name in marks else None)


def _as_xdist_worker(monkeypatch, workers: int, gpu: bool):
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)


def test_a_full_size_gpu_shape_skips_in_an_xdist_worker_sharing_the_gpu(monkeypatch):
    _as_xdist_worker(monkeypatch, workers=8, gpu=True)
    with pytest.raises(pytest.skip.Exception, match="gpu_large"):
        conftest.pytest_runtest_setup(_item("gpu_large"))
    conftest.pytest_runtest_setup(_item("slow"))  # other tests run


@pytest.mark.parametrize("workers, gpu", [(1, True), (8, False)])
def test_a_full_size_gpu_shape_runs_alone_or_without_a_gpu(monkeypatch, workers, gpu):
    _as_xdist_worker(monkeypatch, workers=workers, gpu=gpu)
    conftest.pytest_runtest_setup(_item("gpu_large"))


def test_a_workers_last_failure_is_let_go_with_the_gpu_memory_it_holds(monkeypatch):
    _as_xdist_worker(monkeypatch, workers=8, gpu=True)
    kept = {name: getattr(sys, name) for name in ("last_type", "last_value", "last_traceback") if hasattr(sys, name)}
    try:
        sys.last_type, sys.last_value, sys.last_traceback = RuntimeError, RuntimeError("CUDA out of memory"), None
        conftest.pytest_runtest_teardown(_item(), None)
        assert not any(hasattr(sys, name) for name in ("last_type", "last_value", "last_traceback"))
    finally:
        for name, value in kept.items():
            setattr(sys, name, value)


def test_full_size_shapes_are_marked_and_only_on_a_gpu():
    if not ON_GPU:
        assert gpu_shapes((4096, 128256)) == []
    else:
        (param,) = gpu_shapes((4096, 128256))
        assert param.values == ((4096, 128256),) and [m.name for m in param.marks] == ["gpu_large"]


def _report(nodeid, when, outcome, text=""):
    return SimpleNamespace(nodeid=nodeid, when=when, outcome=outcome, duration=1.234, longreprtext=text,
                           passed=outcome == "passed", failed=outcome == "failed")


def test_the_report_file_gets_each_test_as_it_finishes_with_a_failures_traceback(monkeypatch, tmp_path):
    out = tmp_path / "report.txt"
    monkeypatch.setenv("TUITUNE_TEST_REPORT", str(out))
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    conftest.pytest_runtest_logreport(_report("t.py::a", "setup", "passed"))  # not a result
    conftest.pytest_runtest_logreport(_report("t.py::a", "call", "passed"))
    conftest.pytest_runtest_logreport(_report("t.py::b", "call", "failed", "E   assert 1 == 2\n"))
    conftest.pytest_runtest_logreport(_report("t.py::c", "setup", "skipped"))
    assert out.read_text().splitlines() == [
        "PASSED call 1.23s t.py::a", "FAILED call 1.23s t.py::b", "E   assert 1 == 2", "SKIPPED setup 1.23s t.py::c"]


def test_only_the_xdist_controller_writes_the_report(monkeypatch, tmp_path):
    out = tmp_path / "report.txt"
    monkeypatch.setenv("TUITUNE_TEST_REPORT", str(out))
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    conftest.pytest_runtest_logreport(_report("t.py::a", "call", "failed", "E"))
    assert not out.exists()
