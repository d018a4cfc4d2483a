"""When the trainer replays its layers as CUDA graphs: launch-bound steps that fit, never where it cannot."""

from dataclasses import replace

import pytest

from tuitune import catalog, fit
from tuitune.config import Config, apply_overrides
from tuitune.graphs_policy import LAUNCH_BOUND_WORK, choose_cuda_graphs, layer_params
from tuitune.plan import DeviceFacts, resolve_plan

H100 = DeviceFacts(True, "NVIDIA H100", bf16=True, bnb_optimizers=True, cpu_count=16, free_gb=79.0)


def config(name: str, **overrides) -> Config:
    return apply_overrides(Config(), {"model.name": name, "training.batch_size": 2, "model.max_seq_length": 2048,
                                      **overrides})


def choose(cfg: Config, checkpointing: str = "offloaded", device: str = "cuda", free_gb: float | None = 79.0):
    return choose_cuda_graphs(cfg, device=device, method="qlora", optimizer="adamw_8bit",
                              checkpointing=checkpointing, free_gb=free_gb)


def test_the_measured_shapes_fall_on_either_side_of_the_launch_bound_line():
    work = {name: 2 * 2048 * layer_params(catalog.get_model(name)) for name in ("llama-3.2-1b", "llama-3.1-8b")}
    assert work["llama-3.2-1b"] < LAUNCH_BOUND_WORK < work["llama-3.1-8b"], work


def test_auto_graphs_a_launch_bound_step_that_fits_and_leaves_a_busy_one_eager():
    assert choose(config("llama-3.2-1b")).on
    busy = choose(config("llama-3.1-8b"))
    assert not busy.on and "keeps the GPU busy" in busy.reason
    tight = choose(config("llama-3.2-1b"), free_gb=2.0)
    assert not tight.on and "GB free" in tight.reason


def test_graphs_are_refused_where_a_replay_cannot_stand_in():
    one_b = config("llama-3.2-1b")
    assert "CUDA GPU" in choose(one_b, device="cpu").reason
    assert choose(one_b, checkpointing="none").on  # kept-activation graphs (tuitune.trainer.kept_layer_graphs)
    assert "use_kernels" in choose(config("llama-3.2-1b", **{"training.use_kernels": False})).reason
    assert "ddp" in choose(config("llama-3.2-1b", **{"training.distributed": "ddp", "training.gpus": "2"})).reason
    assert not choose(config("llama-3.2-1b", **{"training.cuda_graphs": "off"})).on
    # shapes that do not repeat: packed rows (SFT with packing, and continued pretraining) and ORPO's pairs
    assert "packed rows" in choose(config("llama-3.2-1b", **{"data.packing": True})).reason
    assert "ORPO" in choose(config("llama-3.2-1b", **{"training.objective": "orpo"})).reason
    assert choose(config("llama-3.2-1b", **{"training.objective": "dpo"})).on  # DPO pads to bucket lengths
    assert choose(config("llama-3.1-8b", **{"training.cuda_graphs": "on"})).on  # asked for: the user's call


def test_the_estimate_counts_what_the_graphs_keep():
    spec = catalog.get_model("llama-3.2-1b")
    eager = fit.estimate(spec, "qlora", checkpointing="standard")
    graphed = fit.estimate(spec, "qlora", checkpointing="standard", cuda_graphs=True)
    assert "graphs" not in eager.breakdown and graphed.breakdown["graphs"] > 0.5  # measured pool: 0.51 GiB
    assert graphed.total_gb > eager.total_gb
    # without recomputation: each layer's input and output once more, the pool (0.61 GiB measured with
    # one batch shape); for batches of other shapes, checkpointed, their layers' inputs and the
    # recompute graphs' pool
    kept = fit.estimate(spec, "qlora", checkpointing="none", cuda_graphs=True).breakdown["graphs"]
    layer_input = 2 * 4096 * 2048 / 1024**3
    assert kept == pytest.approx(3 * 16 * layer_input + fit.KEPT_GRAPHS_SLACK_GB + graphed.breakdown["graphs"])


def test_offloaded_graphs_lend_their_pool_to_the_loss_unless_turned_off(monkeypatch):
    """Offloaded checkpointing's loss takes the LM head's copy from the pool (loss_in_graph_pool), so
    the pool costs that much less (llama-1b measured: 1.45 GiB lent, 1.44 eager, 2.00 not lent)."""
    spec = catalog.get_model("llama-3.2-1b")
    monkeypatch.delenv("TUITUNE_GRAPH_LEND", raising=False)
    lent = fit.estimate(spec, "qlora", checkpointing="offloaded", cuda_graphs=True).breakdown["graphs"]
    monkeypatch.setenv("TUITUNE_GRAPH_LEND", "0")
    kept_apart = fit.estimate(spec, "qlora", checkpointing="offloaded", cuda_graphs=True).breakdown["graphs"]
    head = spec.vocab * spec.hidden * 2 / 1024**3
    assert lent == pytest.approx(kept_apart - head)
    assert 0 < lent < kept_apart


def test_checkpointing_auto_tries_the_graphed_modes_first_on_a_launch_bound_step():
    plan = resolve_plan(config("llama-3.2-1b"), H100)
    assert (plan.checkpointing, plan.cuda_graphs) == ("none", True), plan.checkpointing_reason
    assert plan.dequantize_once  # QLoRA's base weights kept dequantized too, while they fit
    unkept = resolve_plan(config("llama-3.2-1b"), replace(H100, free_gb=8.5))
    assert (unkept.checkpointing, unkept.cuda_graphs, unkept.dequantize_once) == ("none", True, False)
    assert "base weights dequantized once needs" in unkept.checkpointing_reason
    middling = resolve_plan(config("llama-3.2-1b"), replace(H100, free_gb=5.0))
    assert (middling.checkpointing, middling.cuda_graphs) == ("standard", True), middling.checkpointing_reason
    assert "none with CUDA graphs needs" in middling.checkpointing_reason
    # offloaded with graphs costs little more than eager: the loss borrows the pool (loss_in_graph_pool)
    tight = resolve_plan(config("llama-3.2-1b"), replace(H100, free_gb=2.6))
    assert (tight.checkpointing, tight.cuda_graphs) == ("offloaded", True), tight.checkpointing_reason
    squeezed = resolve_plan(config("llama-3.2-1b"), replace(H100, free_gb=2.4))
    assert (squeezed.checkpointing, squeezed.cuda_graphs) == ("offloaded", False), squeezed.checkpointing_reason
    assert "offloaded with CUDA graphs needs" in squeezed.checkpointing_reason
    big = resolve_plan(config("llama-3.1-8b"), H100)
    assert (big.checkpointing, big.cuda_graphs) == ("none", False)
    assert not resolve_plan(config("llama-3.2-1b", **{"training.cuda_graphs": "off"}), H100).cuda_graphs
    # packed rows are never graphed, so auto does not trade recomputation for graphs there
    packed = resolve_plan(config("llama-3.2-1b", **{"data.packing": True}), H100)
    assert (packed.checkpointing, packed.cuda_graphs) == ("none", False), packed.checkpointing_reason
