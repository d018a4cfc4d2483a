"""50 LoRA steps of the embedded default model (SmolLM2-135M, 30 layers) with and without
tuitune's kernels, from the same seed on the same data: the loss curves must agree.

On the CPU the Triton interpreter makes this take many minutes (about 250 kernel launches a
step), so there it runs only with TUITUNE_CONVERGENCE_FULL=1; NOTES.md (Convergence) records the
numbers of such a run. On a GPU it always runs.
"""

import importlib.util
import os

import pytest
import torch

from tests.convergence.convergence_loop import compare, lora, token_batches, train_losses
from tuitune.model_source import EMBEDDED_PACKAGE
from tuitune.trainer.patching import apply_kernels

ON_GPU = torch.cuda.is_available()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ON_GPU and os.environ.get("TUITUNE_CONVERGENCE_FULL") != "1",
                       reason="SmolLM2 convergence under the CPU interpreter takes many minutes; "
                              "set TUITUNE_CONVERGENCE_FULL=1 to run it"),
    # GPU machines reached through a 64 MiB file carry (the device kit) cannot bring the model's wheel
    pytest.mark.skipif(importlib.util.find_spec(EMBEDDED_PACKAGE) is None,
                       reason=f"the embedded default model's package ({EMBEDDED_PACKAGE}) is not installed here"),
]


def _load(folder, device, dtype):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).to(device)


def test_smollm2_converges_the_same_with_kernels(default_model_dir):
    device = "cuda" if ON_GPU else "cpu"
    dtype = torch.bfloat16 if ON_GPU else torch.float32
    batches = token_batches(49152, rows=2, seq=64, n_batches=2, device=device)
    stock = train_losses(lora(_load(default_model_dir, device, dtype)), batches, steps=50, lr=1e-3)
    model = lora(_load(default_model_dir, device, dtype))
    assert apply_kernels(model, allow_cpu=True).supported
    kernels = train_losses(model, batches, steps=50, lr=1e-3)
    compare(f"SmolLM2-135M {str(dtype).removeprefix('torch.')} LoRA r16", stock, kernels, dtype)
