"""Per-GPU memory under DDP, FSDP2 and ZeRO, and the mode tuitune would pick."""

from __future__ import annotations

import pytest

from tuitune import catalog, fit
from tuitune import parallel_fit as pf


@pytest.fixture
def llama70b():
    return catalog.get_model("llama-3.1-70b")


def test_replicated_modes_keep_the_model_whole_and_sharded_ones_split_it(llama70b):
    one = fit.estimate(llama70b, "lora", batch=2, seq=2048)
    two = pf.shares(llama70b, "lora", 2, batch=2, seq=2048)
    four = pf.shares(llama70b, "lora", 4, batch=2, seq=2048)
    assert two["ddp"].per_gpu_gb > one.total_gb                      # the whole model, plus DDP's buckets
    assert two["zero2"].breakdown["weights"] == pytest.approx(one.breakdown["weights"])
    assert two["zero2"].breakdown["optimizer"] == pytest.approx(one.breakdown["optimizer"] / 2)
    gathered = pf.GATHERED_LAYERS * one.breakdown["weights"] / llama70b.layers  # the layers computing now, whole
    assert two["fsdp"].breakdown["weights"] == pytest.approx(one.breakdown["weights"] / 2 + gathered)
    assert four["fsdp"].per_gpu_gb < two["fsdp"].per_gpu_gb < two["ddp"].per_gpu_gb
    assert two["fsdp"].breakdown["activations"] == one.breakdown["activations"]  # each GPU's own micro-batch


def test_pick_replicates_when_the_model_fits_one_gpu_and_shards_when_not(llama70b):
    assert pf.pick_mode(llama70b, "qlora", 1, 140.0) == ("none", None)
    assert pf.pick_mode(llama70b, "qlora", 2, 140.0, batch=2, seq=2048)[0] == "ddp"
    mode, share = pf.pick_mode(llama70b, "lora", 2, 140.0, batch=2, seq=2048)
    assert mode == "fsdp" and share.per_gpu_gb < 140.0
    assert pf.pick_mode(llama70b, "lora", 2, 24.0, batch=2, seq=2048)[0] == "does not fit"


def test_the_models_screen_line(llama70b):
    line = pf.several_gpus_line(llama70b, "lora", 2, "none", 140.0, batch=2, seq=2048)
    assert line.startswith("On 2 GPUs, fsdp:") and "would pick fsdp" in line
    line = pf.several_gpus_line(llama70b, "lora", 2, "ddp", 140.0, batch=2, seq=2048)
    assert "ddp:" in line and "(does not fit)" in line and "would pick fsdp" in line
    assert pf.several_gpus_line(llama70b, "lora", 1, "none", 140.0) is None
