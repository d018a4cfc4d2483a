"""The form's pre-start checks: the GPU fit as the trainer will run, and the data path."""

from __future__ import annotations

import pytest

from tuitune import fit
from tuitune.catalog import get_model
from tuitune.config import Config, apply_overrides
from tuitune.hardware import FakeGpuSource
from tuitune.preflight import check_fit, data_path_problems, gpu_plan, memory_policy, planned_fit_for_model


def config(**overrides) -> Config:
    return apply_overrides(Config(), {"model.name": "llama-3.1-8b", **overrides})


def needs(name: str, method: str, **kwargs) -> float:
    return fit.estimate(get_model(name), method, batch=2, seq=1024, rank=16, **kwargs).total_gb


def test_auto_is_estimated_as_the_trainer_resolves_it():
    snapshot = FakeGpuSource.h200().snapshot()
    check = check_fit(config(), snapshot)
    assert check.refusal is None
    # on an H200 auto keeps no activations to recompute and the base weights dequantized once
    assert check.summary == (f"qlora, none checkpointing, base weights dequantized once (auto): needs "
                             f"{needs('llama-3.1-8b', 'qlora', checkpointing='none', dequantized=True):.1f} GB "
                             "of 139.8 GB free (fits)")
    plain = check_fit(config(**{"training.dequantize_once": "off"}), snapshot)
    assert plain.summary == (f"qlora, none checkpointing (auto): needs "
                             f"{needs('llama-3.1-8b', 'qlora', checkpointing='none'):.1f} GB of 139.8 GB free (fits)")
    lora = check_fit(config(**{"model.method": "lora", "training.optimizer": "adamw_torch",
                               "training.gradient_checkpointing": "standard"}), snapshot)
    assert lora.summary.startswith(
        f"lora, standard checkpointing: needs {needs('llama-3.1-8b', 'lora', optimizer='adamw_torch'):.1f} GB")


def test_an_architecture_without_kernels_is_estimated_on_the_stock_path():
    check = check_fit(config(**{"model.name": "mixtral-8x7b"}), FakeGpuSource.h200().snapshot())
    stock = needs("mixtral-8x7b", "qlora", fused_loss=False, checkpointing="none")
    assert f"none checkpointing (auto): needs {stock:.1f} GB" in check.summary
    assert stock != pytest.approx(needs("mixtral-8x7b", "qlora", fused_loss=True, checkpointing="none"))


def test_the_trainers_gpu_0_decides_not_the_emptiest_gpu():
    busy, idle = FakeGpuSource.h200_gpu(0, used_gb=130.0), FakeGpuSource.h200_gpu(1, used_gb=0.6)
    check = check_fit(config(**{"model.name": "llama-3.1-70b"}), FakeGpuSource([busy, idle]).snapshot())
    assert "of 10.4 GB free (does not fit)" in check.summary
    assert check.refusal.startswith("the run does not fit the GPU: qlora llama-3.1-70b at batch 2 x 1024 tokens")


def test_cpu_runs_have_no_gpu_limit_and_a_missing_cuda_refuses():
    assert check_fit(config(), FakeGpuSource.none().snapshot()).summary == "CPU training: no GPU memory limit"
    assert check_fit(config(**{"training.device": "cpu"}), FakeGpuSource.h200(used_gb=140.0).snapshot()).refusal is None
    refused = check_fit(config(**{"training.device": "cuda"}), FakeGpuSource.none().snapshot())
    assert refused.refusal and "training.device is cuda but no CUDA GPU" in refused.refusal


def test_models_outside_the_catalog_are_not_refused():
    check = check_fit(config(**{"model.name": "someorg/unknown-model"}), FakeGpuSource.h200().snapshot())
    assert check.refusal is None and "not in the catalog" in check.summary


def test_gpu_plan_resolves_auto_for_a_gpu_even_from_a_cpu_config():
    plan = gpu_plan(config(**{"training.device": "cpu"}))
    assert (plan.device, plan.method, plan.checkpointing) == ("cuda", "qlora", "standard")
    assert "does not report its free memory" in plan.checkpointing_reason  # no GPU at hand to measure


def test_data_path_problems(tmp_path):
    assert data_path_problems(config()) == []
    assert data_path_problems(config(**{"data.path": "org/dataset"})) == []
    (tmp_path / "rows.jsonl").write_text("")
    assert data_path_problems(config(**{"data.path": str(tmp_path / "rows.jsonl")})) == []
    missing = str(tmp_path / "missing.jsonl")
    assert data_path_problems(config(**{"data.path": missing})) == [
        f"data.path {missing} does not exist; pick a file on the Dataset screen or fix the path"]


def test_auto_checkpointing_is_resolved_against_gpu_0s_free_memory():
    eight_b = config(**{"model.name": "llama-3.1-8b", "training.batch_size": 2, "model.max_seq_length": 2048})
    roomy = check_fit(eight_b, FakeGpuSource.h200().snapshot())
    assert roomy.refusal is None and roomy.summary.startswith(
        "qlora, none checkpointing, base weights dequantized once (auto)")
    middling = check_fit(eight_b, FakeGpuSource.h200(used_gb=110.0).snapshot())  # 29.8 GB free
    assert middling.refusal is None and middling.summary.startswith("qlora, none checkpointing (auto)")
    tight = check_fit(eight_b, FakeGpuSource.h200(used_gb=132.0).snapshot())
    assert tight.refusal is None and tight.summary.startswith("qlora, offloaded checkpointing (auto)")


def test_a_graphed_plan_is_estimated_with_the_graphs_pool():
    check = check_fit(config(**{"model.name": "llama-3.2-1b"}), FakeGpuSource.h200().snapshot())
    graphed = needs("llama-3.2-1b", "qlora", checkpointing="none", cuda_graphs=True, dequantized=True)
    assert check.summary.startswith("qlora, none checkpointing with CUDA graphs, base weights dequantized once "
                                    f"(auto): needs {graphed:.1f} GB")
    assert graphed > needs("llama-3.2-1b", "qlora", checkpointing="none", dequantized=True)


@pytest.mark.parametrize("free_gb, policy, kwargs", [
    (139.8, "none checkpointing, base weights dequantized once", {"checkpointing": "none", "dequantized": True}),
    (20.0, "none checkpointing", {"checkpointing": "none"}),  # kept weights (26.7 GB) do not fit, none does
    (12.0, "standard checkpointing", {"checkpointing": "standard"}),
])
def test_another_models_row_is_planned_as_its_run_would_be(free_gb, policy, kwargs):
    """The Models screen's rows: the run's config (here a 1B model's) planned for another model and a budget."""
    base = config(**{"model.name": "llama-3.2-1b", "model.max_seq_length": 1024})
    plan, estimate = planned_fit_for_model(base, get_model("llama-3.1-8b"), "llama-3.1-8b", "qlora", free_gb)
    assert memory_policy(plan) == policy
    assert estimate.total_gb == pytest.approx(needs("llama-3.1-8b", "qlora", **kwargs))


def test_a_launch_bound_models_row_is_planned_with_graphs():
    plan, estimate = planned_fit_for_model(config(**{"model.max_seq_length": 1024}), get_model("llama-3.2-1b"),
                                           "llama-3.2-1b", "lora", 80.0)
    assert memory_policy(plan) == "none checkpointing with CUDA graphs"
    assert estimate.total_gb == pytest.approx(needs("llama-3.2-1b", "lora", checkpointing="none", cuda_graphs=True))
