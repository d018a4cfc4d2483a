"""The VRAM estimator: monotonic in every knob, ordered by method, and honest status thresholds."""

from __future__ import annotations

import pytest

from tuitune.catalog import CATALOG, ModelSpec, get_model
from tuitune.fit import (METHODS, FitEstimate, estimate, fit_row, fit_status, kernels_supported, largest_fit,
                         lora_params)

LLAMA_8B = get_model("llama-3.1-8b")
KEYS = {"weights", "lora", "gradients", "optimizer", "activations", "logits", "overhead"}


def test_breakdown_sums_to_total():
    for method in METHODS:
        est = estimate(LLAMA_8B, method)
        assert isinstance(est, FitEstimate) and est.method == method
        assert set(est.breakdown) == KEYS
        assert est.total_gb == pytest.approx(sum(est.breakdown.values()))
        assert all(v >= 0 for v in est.breakdown.values())


@pytest.mark.parametrize("knob,values", [("batch", [1, 2, 4, 8]), ("seq", [256, 1024, 4096, 16384]),
                                         ("rank", [4, 16, 64, 256])])
@pytest.mark.parametrize("method", METHODS)
def test_monotonic_in_batch_seq_and_rank(knob, values, method):
    totals = [estimate(LLAMA_8B, method, **{knob: v}).total_gb for v in values]
    assert totals == sorted(totals)
    if not (knob == "rank" and method == "full"):  # full fine-tuning has no rank
        assert totals[0] < totals[-1]
    else:
        assert totals[0] == totals[-1]


def test_methods_and_options_are_ordered():
    for spec in [get_model("llama-3.2-1b"), LLAMA_8B, get_model("qwen2.5-14b"), get_model("mixtral-8x7b")]:
        q, l, f = (estimate(spec, m).total_gb for m in METHODS)
        assert q < l < f, spec.name
        none, std, off = (estimate(spec, "qlora", checkpointing=c).total_gb for c in ("none", "standard", "offloaded"))
        assert none > std > off, spec.name
        assert estimate(spec, "qlora", fused_loss=False).total_gb > estimate(spec, "qlora").total_gb
        assert (estimate(spec, "lora", optimizer="adamw_torch").total_gb
                > estimate(spec, "lora", optimizer="adamw_8bit").total_gb)


def test_weights_match_the_storage_formats():
    est_lora = estimate(LLAMA_8B, "lora")
    assert est_lora.breakdown["weights"] == pytest.approx(8.03e9 * 2 / 1024**3, rel=0.01)  # bf16
    est_q = estimate(LLAMA_8B, "qlora")
    # NF4 body (about 0.52 bytes a weight) plus bf16 embeddings and head (2 x 525M).
    assert est_q.breakdown["weights"] == pytest.approx((6.98e9 * 0.516 + 1.05e9 * 2) / 1024**3, rel=0.02)
    # LoRA r16 on the seven projections of Llama 3.1 8B: 41.9M parameters.
    assert lora_params(LLAMA_8B, 16) == 41_943_040
    assert lora_params(LLAMA_8B, 16, ["q_proj", "v_proj"]) == 16 * 32 * ((4096 + 4096) + (4096 + 1024))


def test_status_thresholds():
    assert fit_status(10.0, 20.0) == "fits"
    assert fit_status(18.0, 20.0) == "fits"  # exactly 10% margin left
    assert fit_status(18.5, 20.0) == "tight"
    assert fit_status(20.0, 20.0) == "tight"
    assert fit_status(20.01, 20.0) == "does not fit"
    assert fit_status(1.0, 0.0) == "does not fit"


def test_largest_fit_is_the_edge():
    free = 24.0
    batch, seq = largest_fit(LLAMA_8B, "qlora", free)
    assert fit_status(estimate(LLAMA_8B, "qlora", batch=batch, seq=seq).total_gb, free) == "fits"
    # no config with more tokens fits
    for s in (512, 1024, 2048, 4096, 8192, 16384, 32768):
        for b in (1, 2, 4, 8, 16, 32, 64):
            if b * s > batch * seq:
                assert fit_status(estimate(LLAMA_8B, "qlora", batch=b, seq=s).total_gb, free) != "fits"
    # more memory never shrinks the largest fit; too little gives None
    bigger = largest_fit(LLAMA_8B, "qlora", 80.0)
    assert bigger[0] * bigger[1] >= batch * seq
    assert largest_fit(LLAMA_8B, "full", 24.0) is None
    assert largest_fit(LLAMA_8B, "qlora", 1.0) is None


def test_largest_fit_respects_the_context_length():
    phi = get_model("phi-3-mini")  # 4k context
    batch, seq = largest_fit(phi, "qlora", 140.0)
    assert seq <= phi.context


def test_fit_row_covers_every_method():
    row = fit_row(LLAMA_8B, 24.0, batch=2, seq=2048)
    assert set(row.methods) == set(METHODS)
    assert row["qlora"].status == "fits" and row["full"].status == "does not fit"
    assert row["full"].largest is None and row["full"].largest_label == "—"
    assert row["qlora"].largest_label.count("×") == 1
    # unsupported architectures estimate the stock loss
    mixtral = get_model("mixtral-8x7b")
    assert not kernels_supported(mixtral) and kernels_supported(LLAMA_8B)
    assert fit_row(mixtral, 140.0)["qlora"].estimate.total_gb == pytest.approx(
        estimate(mixtral, "qlora", fused_loss=False).total_gb)


def test_unknown_shapes_are_marked_not_guessed():
    spec = ModelSpec("x.gguf", "x", "", 1.0, 0, 0, 0, 0, 0, 0, 0, False, "unknown", source="local")
    row = fit_row(spec, 24.0)
    assert all(m.status == "unknown" for m in row.methods.values())
    assert not estimate(spec, "qlora").exact


def test_bad_arguments():
    with pytest.raises(ValueError):
        estimate(LLAMA_8B, "dora")
    with pytest.raises(ValueError):
        estimate(LLAMA_8B, "qlora", checkpointing="sometimes")


def test_every_catalog_model_estimates():
    for spec in CATALOG:
        for method in METHODS:
            assert estimate(spec, method).total_gb > 0


def test_offloading_counts_the_kept_block_outputs_until_an_entry_passes_the_limit(monkeypatch):
    import tuitune.fit as fit

    assert fit.kept_outputs_per_input(LLAMA_8B) == 2.5  # q 4096 + k, v 1024 each + o_proj 4096, per 4096
    kept_gb = {}
    for seq in (2048, 98304):
        with_outputs = estimate(LLAMA_8B, "qlora", batch=2 if seq == 2048 else 1, seq=seq, checkpointing="offloaded")
        monkeypatch.setattr(fit, "KEEP_ENTRY_LIMIT", 0)
        inputs_only = estimate(LLAMA_8B, "qlora", batch=2 if seq == 2048 else 1, seq=seq, checkpointing="offloaded")
        monkeypatch.undo()
        kept_gb[seq] = with_outputs.total_gb - inputs_only.total_gb
    # two entries on the GPU, each 2.5 x a 4,096-token layer input (32 MiB) beside it
    assert kept_gb[2048] == pytest.approx(2 * 2.5 * 32 / 1024)
    assert kept_gb[98304] == 0.0  # an entry of 3.5 x 768 MiB is past the limit: the input alone
    stock = estimate(LLAMA_8B, "qlora", checkpointing="offloaded", fused_loss=False).total_gb
    monkeypatch.setattr(fit, "KEEP_ENTRY_LIMIT", 0)
    assert estimate(LLAMA_8B, "qlora", checkpointing="offloaded", fused_loss=False).total_gb == stock  # keeps none
