"""Where the kernel tests run: shared constants (imported by name, never through conftest, whose
module name is shared by every test folder's conftest.py)."""

from __future__ import annotations

import pytest
import torch

ON_GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")
DTYPES = [torch.float32, torch.bfloat16]


def gpu_shapes(*shapes) -> list:
    """The full-size shapes a kernel test adds on a GPU, marked `gpu_large`: their float64 references
    need several GiB, more than one pytest-xdist worker's share of the GPU (tests/conftest.py), so
    they run in one process of their own (`pytest -m gpu_large`). Nothing on the CPU."""
    if not ON_GPU:
        return []
    return [pytest.param(s, marks=pytest.mark.gpu_large) for s in shapes]
