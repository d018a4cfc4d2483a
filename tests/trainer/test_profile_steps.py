"""`training.profile_steps`: a profile of whole steps of the real trainer, written to profile.json."""

from __future__ import annotations

import json

import pytest

from tests.trainer.test_training import run_training
from tuitune import events as ev
from tuitune.trainer.profile_callback import PROFILE_FILE
from tuitune.trainer.step_profile import classify, format_profile

pytestmark = pytest.mark.timeout(400)


def test_the_trainer_profiles_the_steps_after_the_warmup(tiny_model_dir, tmp_path):
    run, summary, losses = run_training(tiny_model_dir, tmp_path, "profiled", **{
        "training.max_steps": 8, "training.profile_steps": 2})
    assert sorted(losses) == [1, 2, 3, 4, 5, 6, 7, 8]
    report = json.loads((run.path / PROFILE_FILE).read_text())
    # kernels (here: operators) over steps 4-5, the host over steps 6-7
    assert (report["first_step"], report["last_step"], report["steps"], report["device"]) == (4, 7, 2, "cpu")
    assert 0 < report["kernel_ms"] < report["wall_ms"]
    assert report["idle_ms"] == pytest.approx(report["wall_ms"] - report["kernel_ms"])
    kinds = report["by_kind_ms"]
    assert sum(kinds.values()) == pytest.approx(report["kernel_ms"])
    # the tiny Llama's products (its 64-wide projections look like adapters to the rank rule) and AdamW
    assert kinds.get("base GEMMs", 0) + kinds.get("adapter GEMMs", 0) > 0 and kinds["optimizer"] > 0
    top = {(entry["name"], entry["kind"]) for entry in report["top_kernels"]}
    assert ("aten::mm", "adapter GEMMs") in top
    host = report["host"]
    assert host["steps"] == 2 and host["wall_ms_per_step"] > 0
    # the trainer's Python (transformers, TRL, PEFT, tuitune's callbacks) and the calls into torch
    assert {"transformers", "torch ops", "tuitune"} <= set(host["by_area_ms"])
    assert host["top_functions"] and all(f["calls"] > 0 for f in host["top_functions"])
    phases = [f["function"] for f in host["top_cumulative"]]
    assert any("training_step" in name for name in phases) and any("compute_loss" in name for name in phases)
    logged = [e["text"] for e in run.events() if e["type"] == ev.LOG and "profile of steps 4-7" in e["text"]]
    assert len(logged) == 1 and "adapter GEMMs" in logged[0] and "host, under cProfile" in logged[0]


def test_a_run_too_short_to_profile_says_so(tiny_model_dir, tmp_path):
    run, _, losses = run_training(tiny_model_dir, tmp_path, "short", **{
        "training.max_steps": 3, "training.profile_steps": 2})
    assert len(losses) == 3 and not (run.path / PROFILE_FILE).exists()
    assert any(e["type"] == ev.LOG and "nothing was profiled" in e["text"] for e in run.events())


def test_kernels_are_sorted_by_what_they_compute():
    assert classify("aten::mm", "sm90_gemm", [[4096, 4096], [4096, 4096]], 64, 128256) == "base GEMMs"
    assert classify("aten::mm", "sm90_gemm", [[4096, 16], [16, 4096]], 64, 128256) == "adapter GEMMs"
    assert classify("aten::mm", "sm90_gemm", [[4096, 2048], [2048, 128256]], 64, 128256) == "loss"
    assert classify("aten::_flash_attention_forward", "flash_fwd_kernel", [], 64, 0) == "attention"
    assert classify("", "kDequantizeBlockwise_nf4", [], 64, 0) == "dequantization"
    assert classify("aten::copy_", "elementwise_kernel", [], 64, 0) == "copies"
    assert classify("", "_rms_norm_fwd", [], 64, 0) == "norm/rope/activation"
    assert classify("Optimizer.step#AdamW.step", "Optimizer.step#AdamW.step", [], 64, 0) == "optimizer"


def test_idle_counts_the_time_no_kernel_ran_and_compute_idle_leaves_out_host_device_copies():
    from tuitune.trainer.step_profile import idle_from_intervals

    # wall 100 ms: kernels 0-30 and 20-50 overlap (50 ms busy), a copy 60-80 runs alone, another
    # copy 40-55 overlaps a kernel by 10 ms
    intervals = [(0.0, 30.0, False), (20.0, 50.0, False), (60.0, 80.0, True), (40.0, 55.0, True)]
    idle = idle_from_intervals(intervals, 100.0)
    assert idle["idle_ms"] == pytest.approx(100 - 75)  # busy: 0-55 and 60-80
    assert idle["compute_idle_ms"] == pytest.approx(50.0)  # kernels: 0-50
    assert idle["compute_idle_fraction"] == pytest.approx(0.5)
    assert idle["compute_gaps"] == []  # the kernels' one stretch has no gap inside it
    text = format_profile({"device": "cuda", "steps": 1, "wall_ms": 100.0, "kernel_ms": 95.0, "kernels": 4,
                           **idle, "by_kind_ms": {"base GEMMs": 60.0}})
    assert "idle 25.0 ms (25.0%), compute idle 50.0 ms (50.0%" in text.splitlines()[0]


def test_the_longest_compute_gaps_are_named_by_the_kernels_around_them():
    from tuitune.trainer.step_profile import idle_from_intervals

    intervals = [(0.0, 10.0, False, "gemm"), (12.0, 20.0, False, "swiglu"), (15.0, 40.0, True, "Memcpy HtoD"),
                 (40.0, 41.0, False, "flash_bwd"), (5.0, 11.0, False, "rope")]
    gaps = idle_from_intervals(intervals, 50.0)["compute_gaps"]
    assert [(g["at_ms"], g["ms"], g["after"], g["before"]) for g in gaps] == [
        (20.0, 20.0, "swiglu", "flash_bwd"), (11.0, 1.0, "rope", "swiglu")]
    text = format_profile({"device": "cuda", "steps": 1, "wall_ms": 50.0, "kernel_ms": 25.0, "kernels": 4,
                           "idle_ms": 0.0, "idle_fraction": 0.0, "compute_gaps": gaps, "by_kind_ms": {}})
    assert "      20.0  20.00 ms  swiglu  ->  flash_bwd" in text


def test_compute_gaps_add_up_by_the_kernel_that_ended_them():
    from tuitune.trainer.step_profile import idle_from_intervals

    # three short waits before rms_norm (a host launching too slowly) outweigh one longer wait
    intervals = [(0.0, 1.0, False, "gemm"), (2.0, 3.0, False, "rms_norm"), (4.0, 5.0, False, "gemm"),
                 (6.0, 7.0, False, "rms_norm"), (8.0, 9.0, False, "gemm"), (10.0, 11.0, False, "rms_norm"),
                 (13.5, 14.0, False, "flash_bwd")]
    report = idle_from_intervals(intervals, 14.0)
    assert report["compute_gaps"][0]["before"] == "flash_bwd"  # the single longest gap: 2.5 ms
    by_next = report["compute_gaps_by_next_kernel"]
    assert [(g["before"], g["gaps"], g["ms"]) for g in by_next] == [
        ("rms_norm", 3, 3.0), ("flash_bwd", 1, 2.5), ("gemm", 2, 2.0)]
    text = format_profile({"device": "cuda", "steps": 1, "wall_ms": 14.0, "kernel_ms": 7.0, "kernels": 7,
                           **report, "by_kind_ms": {}})
    assert "         3x     3.00 ms  rms_norm" in text


def test_the_gpu_only_timeline_prints_its_own_idle_and_gaps_below_the_profiled_ones():
    from tuitune.trainer.step_profile import idle_from_intervals

    profiled = idle_from_intervals([(0.0, 1.0, False, "gemm"), (3.0, 4.0, False, "rms_norm")], 4.0)
    real = idle_from_intervals([(0.0, 1.0, False, "gemm"), (1.5, 2.5, True, "Memcpy HtoD"), (2.5, 3.5, False, "silu")],
                               3.5)
    text = format_profile({"device": "cuda", "steps": 1, "wall_ms": 4.0, "kernel_ms": 2.0, "kernels": 2,
                           **profiled, "by_kind_ms": {}, "timeline": {"steps": 1, "wall_ms": 3.5, **real}})
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "only the GPU's activity" in line)
    assert lines[at].endswith("wall 3.5 ms, idle 0.5 ms (14.3%), compute idle 1.5 ms (42.9%)")
    assert any("gemm  ->  rms_norm" in line for line in lines[:at])
    assert any("gemm  ->  silu" in line for line in lines[at:]) and lines[at + 2].startswith("      ")


def test_the_breakdown_prints_each_kind_with_its_share():
    text = format_profile({"device": "cuda", "steps": 2, "wall_ms": 200.0, "kernel_ms": 190.0, "kernels": 900,
                           "idle_ms": 10.0, "idle_fraction": 0.05,
                           "by_kind_ms": {"base GEMMs": 120.0, "attention": 70.0}})
    assert text.splitlines()[0] == "2 steps: wall 200.0 ms, kernels 190.0 ms (900 launches), idle 10.0 ms (5.0%)"
    assert "base GEMMs" in text and "60.0%" in text and "35.0%" in text


def test_the_breakdown_names_the_longest_kernels_and_counts_every_glu_kernel_as_an_activation():
    from tuitune.trainer.step_profile import _breakdown

    timed = [("aten::mm", "nvjet_gemm", [[4096, 4096], [4096, 4096]], 5000.0),
             ("LoRAMLPFunction", "_geglu_bwd", [], 900.0), ("LoRAMLPFunction", "_swiglu_fwd", [], 400.0),
             ("LoRAMLPFunction", "_swiglu_fwd", [], 400.0)]
    report = _breakdown(timed, 1, 10.0, 64, 0, "cuda")
    assert report["by_kind_ms"]["norm/rope/activation"] == pytest.approx(1.7)
    lines = format_profile(report).splitlines()
    at = lines.index("  the 12 longest kernels in all (calls, ms, kind):")
    assert lines[at + 1].split()[:3] == ["1x", "5.0", "ms"] and "nvjet_gemm" in lines[at + 1]
    assert lines[at + 3].split()[:3] == ["2x", "0.8", "ms"] and "_swiglu_fwd" in lines[at + 3]


def test_a_run_that_ends_inside_the_host_window_keeps_both_profiles(tiny_model_dir, tmp_path):
    run, _, losses = run_training(tiny_model_dir, tmp_path, "cut", **{
        "training.max_steps": 6, "training.profile_steps": 2})
    report = json.loads((run.path / PROFILE_FILE).read_text())
    assert (report["first_step"], report["last_step"], report["steps"]) == (4, 6, 2)
    assert report["host"]["steps"] == 1


def test_host_time_is_sorted_into_areas():
    from tuitune.trainer.host_profile import area_of, breakdown

    assert area_of("~", "<method 'addmm_' of 'torch._C.TensorBase' objects>") == "torch ops"
    assert area_of("~", "<built-in method builtins.isinstance>") == "python built-ins"
    assert area_of("/v/lib/python3.11/site-packages/transformers/trainer.py", "training_step") == "transformers"
    assert area_of("/v/lib/python3.11/site-packages/bitsandbytes/functional.py", "dequantize_4bit") == "bitsandbytes"
    assert area_of("/work/main/kernels/ops/lora_weights.py", "project") == "tuitune"
    assert area_of("/v/lib/python3.11/site-packages/tuitune/trainer/callback.py", "on_step_end") == "tuitune"
    stats = {("~", 0, "<method 'mm' of 'torch._C.TensorBase' objects>"): (40, 40, 0.004, 0.004, {}),
             ("/x/site-packages/peft/tuners/lora/layer.py", 10, "forward"): (20, 20, 0.002, 0.010, {})}
    report = breakdown(stats, steps=2, wall_ms=30.0)
    assert report["by_area_ms"] == {"torch ops": pytest.approx(2.0), "peft": pytest.approx(1.0)}
    assert report["top_functions"][0] == {"function": "<method 'mm' of 'torch._C.TensorBase' objects>",
                                          "area": "torch ops", "calls": 20, "own_ms": pytest.approx(2.0),
                                          "cumulative_ms": pytest.approx(2.0)}
    # the phases: Python functions only, by the time in them and below them
    assert [(f["function"], f["cumulative_ms"]) for f in report["top_cumulative"]] == [
        ("/".join(("peft", "tuners", "lora", "layer.py:10(forward)")), pytest.approx(5.0))]
    assert report["top_functions"][1]["function"] == "/".join(("peft", "tuners", "lora", "layer.py:10(forward)"))
    assert report["wall_ms_per_step"] == 15.0


class _FakeWindow:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def start(self):
        self.log.append(("start", self.name))

    def stop(self, steps):
        self.log.append(("stop", self.name, steps))
        return {"steps": steps, "device": "cuda", "wall_ms": 1.0, "kernel_ms": 1.0, "kernels": 1, "idle_ms": 0.0,
                "idle_fraction": 0.0, "by_kind_ms": {}} if self.name == "kernels" else (
            {"steps": steps, "wall_ms_per_step": 1.0, "by_area_ms": {}, "top_functions": [], "top_cumulative": []}
            if self.name == "host" else {"steps": steps})


def _callback_with_gpu_windows(tmp_path):
    from types import SimpleNamespace

    from tuitune.trainer.profile_callback import StepProfileCallback

    logged, calls = [], []
    callback = StepProfileCallback(SimpleNamespace(path=tmp_path), 2, "cpu", rank_max=64, vocab=0, log=logged.append)
    callback.windows = [(name, _FakeWindow(name, calls)) for name in ("kernels", "timeline", "host")]
    return callback, calls, logged


def _steps(callback, steps):
    from types import SimpleNamespace

    for step in steps:
        callback.on_step_end(None, SimpleNamespace(global_step=step), None)


def test_on_a_gpu_the_kernels_the_timeline_and_the_host_each_get_their_own_steps(tmp_path):
    from tuitune.trainer.profile_callback import steps_profiled

    callback, calls, logged = _callback_with_gpu_windows(tmp_path)
    _steps(callback, range(1, 12))
    assert calls == [("start", "kernels"), ("stop", "kernels", 2), ("start", "timeline"), ("stop", "timeline", 2),
                     ("start", "host"), ("stop", "host", 2)]
    report = json.loads((tmp_path / PROFILE_FILE).read_text())
    assert (report["first_step"], report["last_step"]) == (4, 9) == (4, 3 + steps_profiled(2, "cuda"))
    assert report["timeline"] == {"steps": 2} and report["host"]["steps"] == 2
    assert len(logged) == 1 and "profile of steps 4-9" in logged[0]
    assert steps_profiled(2, "cpu") == 4


def test_a_run_that_ends_inside_the_timeline_keeps_the_kernels_and_the_timeline_so_far(tmp_path):
    from types import SimpleNamespace

    callback, calls, _ = _callback_with_gpu_windows(tmp_path)
    _steps(callback, range(1, 7))
    callback.on_train_end(None, SimpleNamespace(global_step=6), None)
    assert calls[-1] == ("stop", "timeline", 1)
    report = json.loads((tmp_path / PROFILE_FILE).read_text())
    assert (report["first_step"], report["last_step"], report["steps"]) == (4, 6, 2)
    assert report["timeline"] == {"steps": 1} and "host" not in report
