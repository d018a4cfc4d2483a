"""The Trainer no longer walks the whole model at every step, and training is unchanged by it."""

from __future__ import annotations

import pytest
import torch

from tests.trainer.test_training import run_training
from tuitune.trainer import run_loop

pytestmark = pytest.mark.timeout(400)


def _count_walks(monkeypatch) -> list[int]:
    """How many top-level `named_modules` walks (parameters(), modules(), num_parameters()...) start."""
    walks = [0]
    original = torch.nn.Module.named_modules

    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        if memo is None:
            walks[0] += 1
        return original(self, memo, prefix, remove_duplicate)

    monkeypatch.setattr(torch.nn.Module, "named_modules", named_modules)
    return walks


def test_more_steps_take_no_more_model_walks(tiny_model_dir, tmp_path, monkeypatch):
    walks = _count_walks(monkeypatch)
    per_run = []
    for steps in (3, 9):
        walks[0] = 0
        run_training(tiny_model_dir, tmp_path, f"s{steps}", **{"training.max_steps": steps})
        per_run.append(walks[0])
    # before: 4 walks per step (FLOP count x2, gradient clipping, zero_grad), so 24 more for 6 more steps
    assert per_run[1] == per_run[0], per_run


def test_losses_and_clipped_gradients_are_unchanged(tiny_model_dir, tmp_path, monkeypatch):
    clipped = {"training.max_steps": 6, "training.max_grad_norm": 0.01, "training.logging_steps": 1}
    _, _, ours = run_training(tiny_model_dir, tmp_path, "ours", **clipped)
    monkeypatch.setattr(run_loop, "skip_per_step_model_walks", lambda trainer, mode: None)
    _, _, stock = run_training(tiny_model_dir, tmp_path, "stock", **clipped)
    assert sorted(ours) == sorted(stock) == list(range(1, 7))
    assert [ours[s] for s in sorted(ours)] == [stock[s] for s in sorted(stock)]
    assert ours[6] != ours[1]
