"""Where the kernel tests run: shared constants (imported by name, never through conftest, whose
module name is shared by every test folder's conftest.py)."""

from __future__ import annotations

import torch

ON_GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")
DTYPES = [torch.float32, torch.bfloat16]
