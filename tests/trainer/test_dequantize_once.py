"""The trainer keeps QLoRA's base weights dequantized only when its plan says so and the kernels,
which read the kept copies, are on."""

from __future__ import annotations

import warnings
from dataclasses import replace

import torch

from tuitune.plan import Plan
from tuitune.trainer.sft import keep_dequantized_if_planned

PLAN = Plan("cuda", "NVIDIA H200", "qlora", "bfloat16", "adamw_8bit", "none", dequantize_once=True,
            dequantize_reason="on: the run needs about 34.5 GB of 139.8 GB free with them")


def _four_bit_model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes as bnb

    layer = bnb.nn.Linear4bit(128, 64, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(torch.randn(64, 128, dtype=torch.bfloat16) * 0.05, requires_grad=False,
                                     quant_type="nf4")
    return torch.nn.Sequential(layer.to("cpu"))


def test_the_plan_s_kept_weights_are_dequantized_in_its_dtype():
    model = _four_bit_model()
    said = keep_dequantized_if_planned(model, PLAN, kernels_on=True)
    assert said.startswith("on: the run needs about 34.5 GB of 139.8 GB free with them; 1 4-bit base weights kept")
    kept = model[0].weight._tuitune_dense
    assert kept.dtype == torch.bfloat16 and kept.shape == (64, 128)


def test_nothing_is_kept_without_the_kernels_or_without_the_plan():
    model = _four_bit_model()
    assert keep_dequantized_if_planned(model, PLAN, kernels_on=False) == \
        "off: tuitune's kernels, which read the kept weights, are not on"
    off = replace(PLAN, dequantize_once=False, dequantize_reason="off (training.dequantize_once = off)")
    assert keep_dequantized_if_planned(model, off, kernels_on=True) == "off (training.dequantize_once = off)"
    assert not hasattr(model[0].weight, "_tuitune_dense")
