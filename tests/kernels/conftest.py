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
