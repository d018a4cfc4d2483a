"""Test-wide setup: Triton's interpreter on machines without CUDA, isolated user folders, model fixtures."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Must happen before any @triton.jit decorator runs: the interpreter flag is read at decoration time.
if os.environ.get("TUITUNE_TEST_GPU") != "1":
    try:
        import torch

        if not torch.cuda.is_available():
            os.environ.setdefault("TRITON_INTERPRET", "1")
    except ImportError:
        os.environ.setdefault("TRITON_INTERPRET", "1")

# User folders point at a throwaway place, except the cache, which keeps the converted default model
# between sessions (converting it takes ~30 s).
_SANDBOX = Path(tempfile.mkdtemp(prefix="tuitune-tests-"))
os.environ["XDG_DATA_HOME"] = str(_SANDBOX / "data")
os.environ["XDG_CONFIG_HOME"] = str(_SANDBOX / "config")
os.environ["TUITUNE_RUNS"] = str(_SANDBOX / "runs")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


def pytest_configure(config):
    """Under pytest-xdist on a GPU, each worker may hold at most its share of the GPU's memory. The
    workers share one device, and a worker's caching allocator keeps what it freed: without a cap, a
    few workers' caches fill the device and the next allocation anywhere else fails (out of memory)
    in tests that have nothing to do with it. At its cap, a worker's allocator frees its own cache
    and retries."""
    workers = _xdist_workers_sharing_a_gpu()
    if workers:
        import torch

        torch.cuda.set_per_process_memory_fraction(0.95 / workers)


def _xdist_workers_sharing_a_gpu() -> int:
    """How many pytest-xdist workers share this process's GPU; 0 outside xdist or without a GPU."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers < 2 or not os.environ.get("PYTEST_XDIST_WORKER"):
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return workers if torch.cuda.is_available() else 0


def pytest_runtest_setup(item):
    """A worker's share of the GPU is too small for the full-size shapes (their float64 references
    alone take several GiB): under xdist they skip, and a run of `-m gpu_large` in one process covers
    them. Seen on an H100: 8 workers at 0.95/8 each failed every 4096 x 128256 cross-entropy case."""
    if item.get_closest_marker("gpu_large") and _xdist_workers_sharing_a_gpu():
        pytest.skip("full-size GPU shape: more than one xdist worker's share of the GPU; run "
                    "`pytest -m gpu_large` without -n")


def pytest_runtest_teardown(item, nextitem):
    """pytest keeps the last failure for post-mortem debugging (``sys.last_traceback``), and with it
    the failed test's frames and every GPU tensor they hold. In an xdist worker with a share of the
    GPU that can be several GiB of its share gone for the tests after it: the likely reason why, on an
    H100, a worker whose cross-entropy cases failed then failed LoRA, NF4 and RoPE cases that pass alone."""
    if _xdist_workers_sharing_a_gpu():
        for name in ("last_type", "last_value", "last_traceback", "last_exc"):
            if hasattr(sys, name):
                delattr(sys, name)


def pytest_runtest_logreport(report):
    """With TUITUNE_TEST_REPORT=FILE, each test's outcome, phase and duration, and a failure's
    traceback, are appended to FILE as they happen: a device call cut by its time limit still says
    what failed and why (pytest prints tracebacks only at the end of a run)."""
    path = os.environ.get("TUITUNE_TEST_REPORT")
    if not path or os.environ.get("PYTEST_XDIST_WORKER"):  # the controller writes, once per report
        return
    if report.when != "call" and report.passed:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{report.outcome.upper()} {report.when} {report.duration:.2f}s {report.nodeid}\n")
        if report.failed:
            out.write(report.longreprtext.rstrip() + "\n")


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    from tuitune.model_source import default_model_dir as convert

    return convert()


@pytest.fixture(scope="session")
def tiny_model_dir(default_model_dir, tmp_path_factory) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer: trains in a fraction of a second a step."""
    from tests.helpers import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), default_model_dir)
