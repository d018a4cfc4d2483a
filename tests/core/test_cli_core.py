"""`tuitune gpu`, `tuitune models` and `tuitune bench` as a user runs them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tuitune.cli.main import main


def test_gpu_with_no_gpu(monkeypatch, capsys):
    monkeypatch.setenv("TUITUNE_FAKE_GPU", "none")
    assert main(["gpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("No GPU: No NVIDIA driver found (NVML library not found).")
    assert "Training will run on the CPU (16 cores, 125.7 GiB RAM)" in out
    assert "RAM      31.4 GiB used of 125.7 GiB" in out and "211.3 GiB free of 458.0 GiB" in out


def test_gpu_with_an_h200(monkeypatch, capsys):
    monkeypatch.setenv("TUITUNE_FAKE_GPU", "h200")
    assert main(["gpu"]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA driver 580.159.04, CUDA 13.0" in out
    assert "GPU 0  NVIDIA H200  (compute capability 9.0)" in out
    assert "0.6 GiB used, 139.8 GiB free, 140.4 GiB total" in out
    assert "utilisation 0 %, temperature 35 °C, power 78 / 700 W" in out
    assert "No GPU" not in out


def test_gpu_with_unsupported_queries_shows_na(monkeypatch, capsys):
    monkeypatch.setenv("TUITUNE_FAKE_GPU", "unsupported")
    assert main(["gpu"]) == 0
    out = capsys.readouterr().out
    assert "utilisation n/a, temperature n/a, power n/a / n/a W" in out and "compute capability n/a" in out


def test_gpu_on_this_machine_runs():
    proc = subprocess.run([sys.executable, "-m", "tuitune.cli.main", "gpu"], capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items() if k != "TUITUNE_FAKE_GPU"})
    assert proc.returncode == 0, proc.stderr
    assert "Host" in proc.stdout and "Traceback" not in proc.stderr


def _rows(out: str) -> dict[str, str]:
    return {line.split()[0]: line for line in out.splitlines()[4:] if line.strip()}


def test_models_with_given_vram(monkeypatch, capsys):
    monkeypatch.setenv("TUITUNE_FAKE_GPU", "none")
    assert main(["models", "--vram", "24"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Fit for 24 GiB free (--vram); batch 2 x 2048 tokens, LoRA rank 16")
    rows = _rows(out)
    assert {"llama-3.1-8b", "qwen2.5-72b", "gemma-2-27b", "smollm2-135m-instruct"} <= set(rows)
    eight = rows["llama-3.1-8b"].split()
    assert eight[1:5] == ["Llama", "3.1", "8.0B", "128k"]
    assert eight[5] == "fits" and "no" in eight[8:]
    assert rows["qwen2.5-72b"].split()[4] == "no"
    assert rows["smollm2-135m-instruct"].endswith("[embedded]")


def test_models_assumes_24_gib_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setenv("TUITUNE_FAKE_GPU", "none")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "24 GiB free, assumed (No NVIDIA driver found" in out and "pass --vram" in out


def test_models_uses_the_detected_gpu_and_options(monkeypatch, capsys):
    monkeypatch.setenv("TUITUNE_FAKE_GPU", "h200")
    assert main(["models", "--seq", "4096", "--batch", "1", "--rank", "64", "--no-kernels"]) == 0
    out = capsys.readouterr().out
    assert "139.8 GiB free on GPU 0 (NVIDIA H200); batch 1 x 4096 tokens, LoRA rank 64" in out
    assert "stock loss (full logits)" in out
    assert _rows(out)["llama-3.1-70b"].split()[5] == "fits"  # 70B QLoRA on an H200


def test_models_lists_a_local_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUITUNE_FAKE_GPU", "none")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text(json.dumps(
        {"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
         "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936,
         "max_position_embeddings": 32768, "tie_word_embeddings": True}))
    assert main(["models", "--vram", "8", "--local", str(tmp_path)]) == 0
    row = _rows(capsys.readouterr().out)["mine"]
    assert "494M" in row and row.endswith("[local]")


def test_models_rejects_bad_numbers(capsys):
    with pytest.raises(SystemExit):
        main(["models", "--vram", "-3"])
    assert "positive number of GiB" in capsys.readouterr().err


def test_bench_rejects_unknown_shape(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--shape", "llama-405b"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.timeout(180)
def test_bench_tiny_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    # Without the Triton interpreter the patcher declines a CPU model (the kernels' own tests cover the
    # interpreter); this test is about the bench's plumbing, and must stay fast on two cores.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update({"CUDA_VISIBLE_DEVICES": "", "XDG_CACHE_HOME": str(tmp_path / "cache")})
    proc = subprocess.run([sys.executable, "-m", "tuitune.cli.main", "bench", "--shape", "tiny", "--batch", "2",
                           "--seq", "32", "--rank", "8", "--steps", "3", "--repeat", "2", "--memory-trace",
                           "--json", str(out)],
                          capture_output=True, text=True, timeout=170, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "baseline (hf)" in proc.stdout and "tuitune" in proc.stdout and "ratio" in proc.stdout
    assert "No CUDA device: ran on the CPU" in proc.stdout
    assert proc.stdout.count("memory trace not run: the allocator's history is CUDA's") == 2
    result = json.loads(out.read_text())
    assert set(result["runs"]) == {"hf", "tuitune"}
    for run in result["runs"].values():
        assert run["device"] == "cpu" and run["trainable_params"] > 0
        point = run["points"][0]
        assert len(point["losses"]) == 3 and all(math.isfinite(x) for x in point["losses"])
        assert point["tokens_per_s"] > 0
        assert len(point["step_times_s"]) == 1 and point["step_times_s"][0] > 0  # 3 steps, 2 warm-up
    assert proc.stdout.count("ms median (") == 2 and proc.stdout.count("; 2 runs: ") == 2, proc.stdout
    # --repeat 2: each path ran twice, alternating; the table and the ratio use the median of the two
    speeds = {path: run["tokens_per_s_runs"] for path, run in result["runs"].items()}
    assert all(len(runs) == 2 and all(t > 0 for t in runs) for runs in speeds.values()), speeds
    assert result["ratios"]["tokens_per_s"] == pytest.approx(sum(speeds["tuitune"]) / sum(speeds["hf"]))
    # same seed, same data, same weights: the first losses agree whether or not kernels applied
    assert result["runs"]["hf"]["points"][0]["losses"][0] == pytest.approx(
        result["runs"]["tuitune"]["points"][0]["losses"][0], rel=1e-3)
    assert result["ratios"]["tokens_per_s"] > 0
    assert result["runs"]["hf"]["kernels"] == "not used"
    assert result["runs"]["tuitune"]["kernels"].startswith(("applied", "not applied"))
    assert (tmp_path / "cache" / "tuitune" / "bench" / "tiny" / "config.json").exists()


@pytest.mark.timeout(300)
def test_bench_trainer_runs_tuitune_train_at_the_same_shape_with_kernels_on_and_off(tmp_path):
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update({"CUDA_VISIBLE_DEVICES": "", "XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)})
    proc = subprocess.run([sys.executable, "-m", "tuitune.cli.main", "bench", "--shape", "tiny", "--batch", "2",
                           "--seq", "32", "--rank", "8", "--steps", "4", "--baseline", "none", "--trainer",
                           "--profile", "2", "--json", str(out)], capture_output=True, text=True, timeout=290,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tuitune train at the same shape (standard checkpointing)" in proc.stdout
    assert "tuitune train (kernels) profile: 2 steps: wall" in proc.stdout
    report = json.loads(out.read_text())["trainer"]
    assert set(report["runs"]) == {"kernels", "stock"}
    for run in report["runs"].values():
        # 4 steps, 2 profiled ones (steps 4 and 5) and 2 profiled on the host (6 and 7); tokens/s leaves out
        # the warm-up (1, 2), the profiled steps and the one before them (3): step 8 is timed
        assert len(run["losses"]) == 8 and run["tokens_per_s"] > 0
        assert (run["profile"]["first_step"], run["profile"]["last_step"]) == (4, 7)
        assert run["profile"]["host"]["steps"] == 2 and run["profile"]["host"]["top_functions"]
    assert report["runs"]["stock"]["kernels"].startswith("off (training.use_kernels = false)")
    assert report["trainer_vs_bench"] > 0 and report["kernels_vs_stock"] > 0
    # both runs trained on the same synthetic rows, each filling the 32-token sequence
    assert report["runs"]["kernels"]["losses"][0] == pytest.approx(report["runs"]["stock"]["losses"][0], rel=1e-3)


@pytest.mark.timeout(300)
def test_trainer_compare_runs_dpo_on_a_bench_shape_without_a_tokenizer_folder(tmp_path):
    """Issue 9's GPU measurement in one command: the shape's checkpoint gets a tokenizer learnt from the
    synthetic words, so the GPU machine needs no model download."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update({"CUDA_VISIBLE_DEVICES": "", "XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)})
    out = tmp_path / "dpo"
    proc = subprocess.run([sys.executable, "-m", "tuitune.bench.trainer_compare", "--shape", "tiny", "--objective",
                           "dpo", "--steps", "3", "--batch", "2", "--seq", "256", "--out", str(out)],
                          capture_output=True, text=True, timeout=290, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "trainer_compare.json").read_text())
    assert report["objective"] == "dpo" and set(report["runs"]) == {"stock", "tuitune"}
    for run in report["runs"].values():
        # the first two steps warm up and are left out of tokens/s
        assert len(run["losses"]) == 3 and len(run["reward_margins"]) == 3 and run["tokens_per_s"] > 0
    assert report["max_loss_diff"] < 1e-3  # on the CPU both runs take the stock path
    assert "per-step |loss difference|" in proc.stdout


def test_trainer_compare_sft_without_a_tokenizer_is_refused_with_advice(capsys):
    from tuitune.bench.trainer_compare import main as compare

    with pytest.raises(SystemExit) as exit_info:
        compare(["--shape", "tiny", "--out", "unused"])
    assert exit_info.value.code == 2
    assert "give --tokenizer" in capsys.readouterr().err
