"""Test-wide setup: Triton's interpreter on machines without CUDA, isolated user folders, model fixtures."""

from __future__ import annotations

import os
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
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers < 2 or not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(0.95 / workers)


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    from tuitune.model_source import default_model_dir as convert

    return convert()


@pytest.fixture(scope="session")
def tiny_model_dir(default_model_dir, tmp_path_factory) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer: trains in a fraction of a second a step."""
    from tests.helpers import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), default_model_dir)
