"""`tuitune bench --memory-trace`: the replay of an allocator trace finds the peak and what was alive
then, by the line of code that allocated it."""

from __future__ import annotations

import pytest
import torch

from tuitune.bench.memory_peak import GIB, format_breakdown, outside_pool_peak, peak_breakdown, site_of

OURS = {"filename": "/work/repo/kernels/ops/lora_mlp.py", "line": 126, "name": "backward"}
HF = {"filename": "/venv/lib/python3.11/site-packages/transformers/models/llama/modeling_llama.py", "line": 80,
      "name": "forward"}
TORCH = {"filename": "/venv/lib/python3.11/site-packages/torch/autograd/graph.py", "line": 9, "name": "_run"}
MIB = 1024**2
# split so that tests/test_references.py does not read them as citations of this repository's files
HF_SITE = "transformers" "/models/llama/modeling_llama.py:80 forward"
TORCH_SITE = "torch" "/autograd/graph.py:9 _run"


def _alloc(addr, mib, *frames):
    return {"action": "alloc", "addr": addr, "size": mib * MIB, "frames": list(frames)}


def _free(addr, mib):
    return {"action": "free_completed", "addr": addr, "size": mib * MIB, "frames": []}


def test_the_peak_and_what_is_alive_then():
    events = [
        _alloc(1, 100, TORCH, OURS),        # ours, below a torch frame
        _alloc(2, 50, TORCH, HF),
        _free(99, 30),                      # older than the trace
        # freed as max_memory_allocated counts it, though its reuse may wait for another stream
        {"action": "free_requested", "addr": 1, "size": 100 * MIB},
        _alloc(3, 200, OURS),
        _free(1, 100),                      # the same free completing: not counted again
        _alloc(4, 10, TORCH),
        _free(2, 50),
    ]
    before = 2 * 1024 * MIB
    result = peak_breakdown({"device_traces": [events]}, before)
    assert result["peak_gb"] * GIB == before + (100 + 50 - 30 - 100 + 200 + 10) * MIB
    assert result["own_gb"] * GIB == 260 * MIB and result["older_freed_gb"] * GIB == 30 * MIB
    sites = {row["site"]: (round(row["gb"] * 1024), row["count"]) for row in result["at_peak"]}
    assert sites == {"kernels/ops/lora_mlp.py:126 backward": (200, 1), HF_SITE: (50, 1), TORCH_SITE: (10, 1)}
    text = format_breakdown(result)
    assert "peak 2.22 GiB = 2.00 GiB alive before the step - 0.03 GiB" in text
    assert "200.0 MiB  x1    kernels/ops/lora_mlp.py:126 backward" in text


def test_a_free_whose_request_came_before_the_trace_counts_when_it_completes():
    events = [_alloc(1, 50, OURS), _free(7, 40), _alloc(2, 45, OURS)]
    result = peak_breakdown({"device_traces": [events]}, 100 * MIB)
    assert result["older_freed_gb"] * GIB == 40 * MIB and result["peak_gb"] * GIB == 155 * MIB


def test_a_site_prefers_our_code_then_the_libraries_then_the_innermost_frame():
    assert site_of([TORCH, HF, OURS]) == "kernels/ops/lora_mlp.py:126 backward"
    assert site_of([TORCH, HF]) == HF_SITE
    assert site_of([TORCH]) == TORCH_SITE
    assert site_of([]) == "(no Python frame)"


def test_an_empty_trace_has_no_peak_of_its_own():
    result = peak_breakdown({"device_traces": []}, 5 * MIB)
    assert result["own_gb"] == 0 and result["peak_gb"] * GIB == 5 * MIB and result["at_peak"] == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the allocator's history is CUDA's")
def test_a_real_trace_on_the_gpu_matches_the_allocators_peak():
    from tuitune.bench.memory_peak import trace_step

    weight = torch.randn(1024, 1024, device="cuda")

    def step():
        x = torch.randn(4096, 1024, device="cuda")
        (x @ weight).sum().item()

    result = trace_step(step)
    assert result["peak_gb"] == pytest.approx(result["reported_peak_gb"], rel=0.01)
    assert result["at_peak"] and result["own_gb"] >= 4096 * 1024 * 4 / GIB


def test_the_peak_outside_a_pool_leaves_out_what_was_lent_from_it():
    """A graphed run whose loss borrows the graphs' pool: the pool is counted whole elsewhere, so the
    peak that goes with it is that of the allocations outside the pool's segments."""
    pool = (7, 1)
    segments = [{"device": 0, "address": 1000, "total_size": 500, "segment_pool_id": pool},
                {"device": 0, "address": 5000, "total_size": 800, "segment_pool_id": (0, 0)}]
    events = [
        {"action": "alloc", "addr": 5000, "size": 100},   # outside
        {"action": "alloc", "addr": 1000, "size": 400},   # lent from the pool
        {"action": "alloc", "addr": 5100, "size": 50},    # outside: the peak outside is 150
        {"action": "free_requested", "addr": 1000, "size": 400},
        {"action": "free_completed", "addr": 1000, "size": 400},
        {"action": "free_completed", "addr": 5100, "size": 50},
        {"action": "alloc", "addr": 5100, "size": 30},
    ]
    snapshot = {"segments": segments, "device_traces": [events]}
    assert outside_pool_peak(snapshot, 2000, pool) == 2150
    assert peak_breakdown(snapshot, 2000)["peak_gb"] * GIB == 2550  # everything: the lent tensor included
