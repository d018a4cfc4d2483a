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


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    from tuitune.model_source import default_model_dir as convert

    return convert()


@pytest.fixture(scope="session")
def tiny_model_dir(default_model_dir, tmp_path_factory) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer: trains in a fraction of a second a step."""
    from tests.helpers import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), default_model_dir)
