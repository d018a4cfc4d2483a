"""Convergence-test setup: the Triton interpreter on machines without CUDA (before any kernel import)."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
