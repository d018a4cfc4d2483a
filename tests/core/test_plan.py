"""`auto` resolved once, from device facts: what the trainer and the form's fit check both rely on."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tuitune.config import Config, apply_overrides
from tuitune.errors import TuituneError
from tuitune.hardware import FakeGpuSource, GpuInfo
from tuitune.plan import DeviceFacts, Plan, facts_from_snapshot, resolve_plan

H200 = DeviceFacts(True, "NVIDIA H200", bf16=True, bnb_optimizers=True, cpu_count=16)
T4 = DeviceFacts(True, "Tesla T4", bf16=False, bnb_optimizers=True, cpu_count=8)
CPU = DeviceFacts(False, bnb_optimizers=True, cpu_count=2)


def config(**overrides) -> Config:
    return apply_overrides(Config(), overrides)


def test_auto_on_a_gpu_is_qlora_in_bf16_with_8bit_adamw():
    plan = resolve_plan(config(), H200)
    assert (plan.device, plan.device_name, plan.method, plan.dtype) == ("cuda", "NVIDIA H200", "qlora", "bfloat16")
    assert (plan.optimizer, plan.hf_optimizer, plan.checkpointing) == ("adamw_8bit", "adamw_bnb_8bit", "standard")
    assert plan.notes == () and "does not report its free memory" in plan.checkpointing_reason
    assert resolve_plan(config(), T4).dtype == "float16"


def test_checkpointing_auto_is_the_default_and_picks_the_fastest_mode_that_fits():
    assert Config().training.gradient_checkpointing == "auto"
    eight_b = config(**{"model.name": "llama-3.1-8b", "training.batch_size": 2, "model.max_seq_length": 2048})

    def mode(free_gb: float) -> Plan:
        return resolve_plan(eight_b, replace(H200, free_gb=free_gb))

    assert mode(139.0).checkpointing == "none"          # an H200: no recomputation at all
    assert mode(16.0).checkpointing == "standard"       # none needs about 21.5 GB
    assert mode(7.5).checkpointing == "offloaded"       # standard needs about 8.6 GB
    squeezed = mode(5.0)
    assert squeezed.checkpointing == "offloaded" and "no mode fits" in squeezed.checkpointing_reason
    assert "none needs 21.5 GB" in mode(16.0).checkpointing_reason
    asked = resolve_plan(apply_overrides(eight_b, {"training.gradient_checkpointing": "standard"}),
                         replace(H200, free_gb=139.0))
    assert asked.checkpointing == "standard" and asked.checkpointing_reason == ""


def test_checkpointing_auto_keeps_standard_for_a_model_the_estimator_does_not_know():
    plan = resolve_plan(config(**{"model.name": "/models/unknown-local-folder"}), replace(H200, free_gb=80.0))
    assert plan.checkpointing == "standard" and "unknown" in plan.checkpointing_reason


def test_auto_on_the_cpu_is_fp32_lora_without_checkpointing():
    plan = resolve_plan(config(**{"training.optimizer": "paged_adamw_8bit"}), CPU)
    assert (plan.device, plan.device_name, plan.method, plan.dtype) == ("cpu", "CPU (2 cores)", "lora", "float32")
    assert (plan.optimizer, plan.checkpointing) == ("adamw_8bit", "none")
    assert any("Paged optimizers need a GPU" in note for note in plan.notes)
    assert not any("checkpointing" in note for note in plan.notes)  # auto asks nothing the CPU must refuse
    asked = resolve_plan(config(**{"training.gradient_checkpointing": "standard"}), CPU)
    assert asked.checkpointing == "none"
    assert any("checkpointing 'standard' is off on the CPU" in note for note in asked.notes)


def test_8bit_adamw_falls_back_without_bitsandbytes():
    plan = resolve_plan(config(**{"training.optimizer": "adamw_8bit"}), DeviceFacts(True, "GPU", bf16=True))
    assert plan.optimizer == "adamw_torch" and any("bitsandbytes" in note for note in plan.notes)
    assert resolve_plan(config(), DeviceFacts(True, "GPU", bf16=True)).optimizer == "adamw_torch"


def test_impossible_choices_are_refused_by_name():
    with pytest.raises(TuituneError, match="training.device is cuda but no CUDA GPU"):
        resolve_plan(config(**{"training.device": "cuda"}), CPU)
    with pytest.raises(TuituneError, match="model.dtype float16 is not usable"):
        resolve_plan(config(**{"model.dtype": "float16"}), CPU)
    assert resolve_plan(config(**{"training.device": "cpu"}), H200).device == "cpu"


def test_facts_from_the_snapshot_read_gpu_0():
    facts = facts_from_snapshot(FakeGpuSource.h200(count=2).snapshot())
    assert facts.has_cuda and facts.gpu_name == "NVIDIA H200" and facts.bf16
    assert not facts_from_snapshot(FakeGpuSource.none().snapshot()).has_cuda
    turing = GpuInfo(0, "Tesla T4", None, 15.0, 1.0, 14.0, None, None, None, None, "7.5", [], 0)
    assert not facts_from_snapshot(FakeGpuSource([turing]).snapshot()).bf16
    unknown = FakeGpuSource.unsupported().snapshot()  # no compute capability reported
    assert facts_from_snapshot(unknown).has_cuda and not facts_from_snapshot(unknown).bf16


def test_dequantize_once_is_auto_s_first_choice_when_it_fits_and_a_memory_saving_mode_never_takes_it():
    eight_b = config(**{"model.name": "llama-3.1-8b", "training.batch_size": 2, "model.max_seq_length": 2048})

    def plan(free_gb: float, **overrides) -> Plan:
        return resolve_plan(apply_overrides(eight_b, overrides), replace(H200, free_gb=free_gb))

    roomy = plan(139.0)
    assert (roomy.checkpointing, roomy.dequantize_once) == ("none", True)
    assert roomy.checkpointing_reason.startswith("none, base weights dequantized once, the fastest mode")
    # about 34.5 GB kept dequantized, 21.5 GB without: the plain none fits 30 GB, not the kept weights
    middling = plan(30.0)
    assert (middling.checkpointing, middling.dequantize_once) == ("none", False)
    assert "base weights dequantized once needs 34." in middling.checkpointing_reason
    assert not plan(16.0).dequantize_once
    # asked-for modes: none keeps them when they fit; recomputation is there to save memory
    assert plan(139.0, **{"training.gradient_checkpointing": "none"}).dequantize_once
    assert "about 34." in plan(139.0, **{"training.gradient_checkpointing": "none"}).dequantize_reason
    assert not plan(30.0, **{"training.gradient_checkpointing": "none"}).dequantize_once
    standard = plan(139.0, **{"training.gradient_checkpointing": "standard"})
    assert not standard.dequantize_once and "standard recomputation is there to save memory" in standard.dequantize_reason
    # on: whatever the mode, and auto then estimates every mode with the kept weights
    forced = plan(30.0, **{"training.dequantize_once": "on"})
    assert forced.dequantize_once and forced.checkpointing == "standard"
    off = plan(139.0, **{"training.dequantize_once": "off"})
    assert (off.checkpointing, off.dequantize_once) == ("none", False)
    assert off.dequantize_reason == "off (training.dequantize_once = off)"


@pytest.mark.parametrize("overrides,why", [
    ({"model.method": "lora"}, "only QLoRA keeps 4-bit base weights"),
    ({"training.use_kernels": False}, "training.use_kernels is off"),
    ({"training.distributed": "ddp", "training.gpus": "2"}, "ddp places the 4-bit weights itself"),
])
def test_dequantize_once_needs_qlora_the_kernels_and_one_process(overrides, why):
    plan = resolve_plan(config(**{"model.name": "llama-3.1-8b", "training.dequantize_once": "on", **overrides}),
                        replace(H200, free_gb=139.0))
    assert not plan.dequantize_once and why in plan.dequantize_reason
    assert not resolve_plan(config(**{"training.dequantize_once": "on"}), CPU).dequantize_once
