"""Kernel-test fixtures. The interpreter switch must be set before any @triton.jit runs; the
project's tests/conftest.py does it too, this keeps `pytest tests/kernels` self-sufficient."""

from __future__ import annotations

import json
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tests.kernels.kernel_env import DEVICE  # noqa: E402  (after the interpreter switch)


@pytest.fixture
def device() -> torch.device:
    return DEVICE


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


@pytest.fixture(autouse=True)
def _uninitialized_memory_is_nan():
    """On the CPU, every uninitialized tensor (torch.empty, new_empty, empty_like) starts as NaN: a
    kernel or an op that reads memory it never wrote (a GEMM with beta=0 writing into an empty
    buffer must not read it; the deferred MLP's output is never read) fails here, not at random on
    a GPU whose allocator hands back old values. Left off on the GPU, where deterministic mode
    would change the algorithms being tested."""
    if DEVICE.type != "cpu":
        yield
        return
    import torch.utils.deterministic as deterministic

    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              deterministic.fill_uninitialized_memory)
    torch.use_deterministic_algorithms(True, warn_only=True)
    deterministic.fill_uninitialized_memory = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        deterministic.fill_uninitialized_memory = before[2]


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("KERNEL_ERRORS_JSON")
    if not path:
        return
    from tests.kernels.tolerances import RECORDED  # noqa: PLC0415

    worst: dict[tuple[str, str], dict] = {}
    for rec in RECORDED:
        key = (rec["name"], rec["dtype"])
        if key not in worst or rec["max_rel"] > worst[key]["max_rel"]:
            worst[key] = rec
    with open(path, "w") as f:
        json.dump(sorted(worst.values(), key=lambda r: (r["name"], r["dtype"])), f, indent=1)
