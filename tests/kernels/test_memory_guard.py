"""The kernel tests' guard against reading memory that was never written (tests/kernels/conftest.py)."""

import pytest
import torch

from tests.kernels.kernel_env import DEVICE


@pytest.mark.skipif(DEVICE.type != "cpu", reason="the guard runs on the CPU only")
def test_uninitialized_tensors_start_as_nan_in_kernel_tests():
    assert torch.empty(4).isnan().all()
    assert torch.zeros(2).new_empty((3,)).isnan().all() and torch.empty_like(torch.zeros(2)).isnan().all()
    # a GEMM told beta=0 never reads the buffer it writes
    y = torch.zeros(1).new_empty((2, 3)).addmm_(torch.ones(2, 4), torch.ones(4, 3), beta=0.0)
    assert torch.equal(y, torch.full((2, 3), 4.0))
